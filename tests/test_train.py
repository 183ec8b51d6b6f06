"""search.train: recipe schedule and optimizer, EMA, data, resume, DDP, accuracy, proxy, CLI."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from search.train import (EMA, ImageFolderDataset, ResumableDistributedSampler,  # noqa: E402
                          RMSpropTF, TrainConfig, Trainer, holdout_split, image_folder_splits,
                          lr_at, make_optimizer, make_scheduler, param_groups, set_bn, train)
from search.accuracy import JsonlCache  # noqa: E402
from search.accuracy.proxy import proxy_accuracy  # noqa: E402
from space import format_arch, resolve_arch  # noqa: E402
from space.build import build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The small architecture of the accuracy test (3 stages, 24x24 input).
DIGITS_ARCH = ("res24_stem16_head128_cls10:r1_k3_s11_e1_i16_o16,r2_k3_s22_e3_i16_o24,"
               "r2_k3_s22_e3_i24_o32")
# A tinier one for resume / DDP / proxy / CLI checks.
TINY_ARCH = "res16_stem8_head32_cls10:r1_k3_s11_e1_i8_o8,r1_k3_s22_e3_i8_o16_se0.25"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _write_digits(root: Path, size: int, per_class: int | None = None, val_frac: float = 0.2) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    for c in range(10):
        idx = np.flatnonzero(d.target == c)
        rng.shuffle(idx)
        if per_class:
            idx = idx[:per_class]
        n_val = int(round(len(idx) * val_frac))
        for split, ids in (("val", idx[:n_val]), ("train", idx[n_val:])):
            out = root / split / f"digit{c}"
            out.mkdir(parents=True, exist_ok=True)
            for i in ids:
                grey = (d.images[i] * (255.0 / 16.0)).astype(np.uint8)
                im = Image.fromarray(grey, "L").resize((size, size), Image.Resampling.BILINEAR)
                im.convert("RGB").save(out / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory) -> Path:
    """scikit-learn's digits (1,797 8x8 images) as 32x32 RGB PNGs, 80/20 train/val."""
    return _write_digits(tmp_path_factory.mktemp("digits"), 32)


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    """16 digits per class at 16x16: 12 train + 4 val per class."""
    return _write_digits(tmp_path_factory.mktemp("digits_small"), 16, per_class=16, val_frac=0.25)


def _tiny_cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, warmup_epochs=0.5, num_workers=0, ckpt_every_steps=4,
                lr_per_256=0.256, bn_momentum=0.9)
    base.update(kw)
    return TrainConfig(**base)


# -- schedule ---------------------------------------------------------------------------
def test_lr_schedule_matches_the_release():
    cfg = TrainConfig()
    spe, gb = 100, 4096
    peak = 0.016 * 4096 / 256
    assert lr_at(0, cfg, spe, gb) == 0.0                       # warm-up starts at 0
    assert lr_at(250, cfg, spe, gb) == pytest.approx(peak / 2)
    assert lr_at(499, cfg, spe, gb) == pytest.approx(peak * 499 / 500)
    # the staircase clock runs from step 0: after 5 warm-up epochs floor(500/240) = 2 decays
    assert lr_at(500, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 2)
    assert lr_at(719, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 2)
    assert lr_at(720, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 3)   # every 2.4 epochs
    assert lr_at(959, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 3)
    assert lr_at(960, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 4)
    assert lr_at(350 * spe - 1, cfg, spe, gb) == pytest.approx(peak * 0.97 ** 145)
    # without warm-up the first decay is at 2.4 epochs, and the rate scales with the batch
    nw = cfg.replace(warmup_epochs=0)
    assert lr_at(0, nw, spe, 256) == pytest.approx(0.016)
    assert lr_at(239, nw, spe, 256) == pytest.approx(0.016)
    assert lr_at(240, nw, spe, 256) == pytest.approx(0.016 * 0.97)
    assert lr_at(0, nw, 3, 512) == pytest.approx(0.032)
    for bad in ((-1, cfg, spe, gb), (0, cfg, 0, gb), (0, cfg, spe, 0), (1.5, cfg, spe, gb)):
        with pytest.raises(ValueError):
            lr_at(*bad)


def test_scheduler_follows_lr_at():
    cfg = TrainConfig(warmup_epochs=1, decay_epochs=0.5)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10, global_batch=64)
    for step in range(40):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(step, cfg, 10, 64))
        opt.step()
        sched.step()


# -- optimizer -----------------------------------------------------------------------------
def test_optimizer_settings_and_weight_decay_groups():
    arch = resolve_arch(DIGITS_ARCH)
    cfg = TrainConfig()
    model = set_bn(build_model(arch), cfg)
    opt = make_optimizer(model, cfg, 512)
    assert isinstance(opt, RMSpropTF)
    names = {g["name"]: g for g in opt.param_groups}
    assert set(names) == {"decay", "no_decay"}
    for g in opt.param_groups:
        assert g["alpha"] == 0.9 and g["momentum"] == 0.9 and g["eps"] == 1e-3
        assert g["lr"] == pytest.approx(0.032)
    assert names["decay"]["weight_decay"] == 1e-5 and names["no_decay"]["weight_decay"] == 0.0
    bn_params, weights, biases = set(), set(), set()
    for m in model.modules():
        for n, p in m.named_parameters(recurse=False):
            if isinstance(m, torch.nn.BatchNorm2d):
                bn_params.add(id(p))
            elif n == "bias":
                biases.add(id(p))
            else:
                weights.add(id(p))
    assert bn_params and biases and weights
    assert {id(p) for p in names["decay"]["params"]} == weights
    assert {id(p) for p in names["no_decay"]["params"]} == bn_params | biases
    assert len(weights) + len(bn_params) + len(biases) == len(list(model.parameters()))
    # biases decayed on request (the TF release's behaviour)
    groups = param_groups(model, cfg.replace(decay_biases=True))
    assert {id(p) for p in groups[0]["params"]} == weights | biases
    # BN in TF's convention: momentum 0.99 -> PyTorch 0.01; eps 1e-3
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.momentum == pytest.approx(0.01) and m.eps == 1e-3
    # the torch.optim mapping: eps outside the sqrt becomes sqrt(eps)
    topt = make_optimizer(model, cfg.replace(optimizer="rmsprop_torch"), 256)
    assert isinstance(topt, torch.optim.RMSprop)
    g = topt.param_groups[0]
    assert g["alpha"] == 0.9 and g["momentum"] == 0.9 and g["eps"] == pytest.approx(math.sqrt(1e-3))
    assert g["lr"] == pytest.approx(0.016)


def test_rmsprop_tf_update_maths():
    w0 = torch.tensor([0.5, -2.0, 3.0])
    p = torch.nn.Parameter(w0.clone())
    lr, wd, rho, mom, eps = 0.1, 0.01, 0.9, 0.9, 1e-3
    opt = RMSpropTF([p], lr=lr, alpha=rho, eps=eps, momentum=mom, weight_decay=wd)
    w, ms, buf = w0.double(), torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for k, g in enumerate([torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.5, -1.0, 4.0])]):
        p.grad = g.clone()
        opt.step()
        gt = g.double() + wd * w
        ms = rho * ms + (1 - rho) * gt ** 2
        buf = mom * buf + lr * gt / torch.sqrt(ms + eps)
        w = w - buf
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-6, atol=1e-7)


def test_ema_update_maths():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype.is_floating_point:
                t.fill_(1.0)
    ema = EMA(model, decay=0.9)
    shadow = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for n in range(1, 4):
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.dtype.is_floating_point:
                    t.fill_(float(n + 1))
            model.state_dict()["1.num_batches_tracked"].fill_(7 * n)
        ema.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        assert ema.decay_at(n) == pytest.approx(d)
        for k, v in ema.module.state_dict().items():
            if v.dtype.is_floating_point:
                shadow[k] = d * shadow[k] + (1 - d) * (n + 1)
                torch.testing.assert_close(v, shadow[k])
            else:
                assert int(v) == 7 * n
    plain = EMA(model, decay=0.5, warmup=False)
    assert plain.decay_at(1) == 0.5
    clone = EMA(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)))
    clone.load_state_dict(ema.state_dict())
    assert clone.updates == 3 and clone.decay == 0.9
    for a, b in zip(clone.module.state_dict().values(), ema.module.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_config_validation_and_round_trip():
    cfg = TrainConfig()
    assert (cfg.lr_per_256, cfg.warmup_epochs, cfg.decay_rate, cfg.decay_epochs) == (0.016, 5.0, 0.97, 2.4)
    assert (cfg.rms_decay, cfg.momentum, cfg.rms_eps, cfg.weight_decay) == (0.9, 0.9, 1e-3, 1e-5)
    assert (cfg.label_smoothing, cfg.ema_decay, cfg.bn_momentum, cfg.epochs) == (0.1, 0.9999, 0.99, 350)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (dict(epochs=-1), dict(batch_size=0), dict(optimizer="adam"), dict(ema_decay=1.5),
                dict(crop_scale=(0.5, 0.1)), dict(dropout=1.0), dict(seed=-3), dict(lr_per_256=0)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"nope": 1})


# -- data ------------------------------------------------------------------------------------
def test_image_folder_errors_name_the_path(tmp_path, small_root):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        image_folder_splits(tmp_path / "absent")
    (tmp_path / "a" / "train" / "x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="val"):
        image_folder_splits(tmp_path / "a")
    (tmp_path / "a" / "val" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        image_folder_splits(tmp_path / "a")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "train" / "x" / "1.png")
    (tmp_path / "a" / "val" / "y").mkdir()
    with pytest.raises(ValueError, match="unexpected y"):
        image_folder_splits(tmp_path / "a")
    (tmp_path / "b" / "train").mkdir(parents=True)
    (tmp_path / "b" / "val").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        image_folder_splits(tmp_path / "b")
    s = image_folder_splits(small_root)
    assert s.classes == tuple(f"digit{c}" for c in range(10))
    assert len(s.train) == 120 and len(s.val) == 40


def test_holdout_split_is_stratified_and_seeded(small_root):
    a = holdout_split(small_root / "train", 3, seed=1)
    b = holdout_split(small_root / "train", 3, seed=1)
    c = holdout_split(small_root / "train", 3, seed=2)
    assert a == b and a.val != c.val
    assert len(a.val) == 30 and len(a.train) == 90
    assert np.bincount([y for _, y in a.val]).tolist() == [3] * 10
    assert not set(a.val) & set(a.train)
    f = holdout_split(small_root / "train", 0.25, seed=0)
    assert len(f.val) == 30
    for bad in (12, 0, 1.5, True):
        with pytest.raises(ValueError):
            holdout_split(small_root / "train", bad)


def test_dataset_augmentation_is_deterministic(small_root):
    s = image_folder_splits(small_root)
    ds = ImageFolderDataset(s.train, 24, train=True, seed=3)
    x, y = ds[5]
    assert x.dtype == torch.uint8 and x.shape == (3, 24, 24) and y == s.train[5][1]
    assert torch.equal(ds[5][0], x)
    draws = []
    for e in range(4):
        ds.set_epoch(e)
        draws.append(ds[5][0])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    val = ImageFolderDataset(s.val, 16, train=False)
    assert torch.equal(val[0][0], val[0][0])
    # a plain torch DistributedSampler works with the dataset
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler)))
    assert batch[0].shape == (4, 3, 24, 24)


def test_resumable_sampler_shards_and_skips():
    parts = [ResumableDistributedSampler(23, num_replicas=3, rank=r, seed=5) for r in range(3)]
    for s in parts:
        s.set_epoch(2)
    idx = [list(s) for s in parts]
    assert all(len(i) == 7 for i in idx)
    assert len(set(sum(idx, []))) == 21
    parts[1].set_start(4)
    assert list(parts[1]) == idx[1][4:] and len(parts[1]) == 3
    parts[0].set_epoch(3)
    assert list(parts[0]) != idx[0]


# -- resume --------------------------------------------------------------------------------
def _state(trainer: Trainer) -> dict:
    return {"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict(),
            "opt": trainer.optimizer.state_dict()["state"], "step": trainer.step,
            "lr": trainer.optimizer.param_groups[0]["lr"]}


def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(small_root, tmp_path, monkeypatch):
    cfg = _tiny_cfg()                                     # 15 steps/epoch, checkpoint every 4
    full = Trainer(TINY_ARCH, small_root, cfg, tmp_path / "full", progress=False)
    report = full.run()
    assert report["status"] == "completed" and full.step == 30
    reference = _state(full)

    original = Trainer._train_step

    def killed_at_step_10(self, images, labels):
        if self.step == 10:
            raise RuntimeError("simulated kill")
        return original(self, images, labels)

    monkeypatch.setattr(Trainer, "_train_step", killed_at_step_10)
    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(TINY_ARCH, small_root, cfg, tmp_path / "killed", progress=False).run()
    monkeypatch.setattr(Trainer, "_train_step", original)
    resumed = Trainer(TINY_ARCH, small_root, cfg, tmp_path / "killed", progress=False)
    assert resumed.resumed_from == 8 and resumed.step_in_epoch == 8   # last checkpoint
    assert resumed.run()["status"] == "completed"
    got = _state(resumed)
    torch.testing.assert_close(got, reference, rtol=1e-6, atol=1e-7)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx(
        [r["train_loss"] for r in full.history], rel=1e-6)

    # Ctrl-C (SIGINT) mid-epoch 2: the step finishes, a checkpoint is written, status says so
    def interrupted_at_step_20(self, images, labels):
        if self.step == 20:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, images, labels)

    monkeypatch.setattr(Trainer, "_train_step", interrupted_at_step_20)
    first = Trainer(TINY_ARCH, small_root, cfg, tmp_path / "sigint", progress=False).run()
    assert first["status"] == "interrupted" and first["steps"] == 21
    monkeypatch.setattr(Trainer, "_train_step", original)
    again = Trainer(TINY_ARCH, small_root, cfg, tmp_path / "sigint", progress=False)
    assert again.resumed_from == 21
    again.run()
    torch.testing.assert_close(_state(again), reference, rtol=1e-6, atol=1e-7)
    rows = (tmp_path / "sigint" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,lr,train_loss")

    # max_steps stops with a checkpoint; other settings refuse to resume it
    stopped = train(TINY_ARCH, small_root, cfg, tmp_path / "stopped", progress=False, max_steps=6)
    assert stopped["status"] == "stopped" and stopped["steps"] == 6
    with pytest.raises(ValueError, match="lr_per_256"):
        Trainer(TINY_ARCH, small_root, cfg.replace(lr_per_256=0.1), tmp_path / "stopped")


def test_amp_and_channels_last_paths_run_on_cpu(small_root, tmp_path):
    # On CUDA these are on by default (fp16 + GradScaler); bf16 autocast exercises them here.
    cfg = _tiny_cfg(amp=True, amp_dtype="bfloat16", channels_last=True, epochs=1)
    t = Trainer(TINY_ARCH, small_root, cfg, tmp_path / "amp", progress=False, device="cpu")
    assert t.amp and t.channels_last and not t.scaler.is_enabled()
    report = t.run()
    assert report["status"] == "completed" and report["amp"] and math.isfinite(report["val_loss"])
    assert t.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


# -- DDP ----------------------------------------------------------------------------------
_DDP_WORKER = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    from search.train import Trainer, TrainConfig
    data, out, arch = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = TrainConfig(epochs=1, batch_size=4, warmup_epochs=0.5, num_workers=0,
                      ckpt_every_steps=0, lr_per_256=0.256, bn_momentum=0.9)
    t = Trainer(arch, data, cfg, out, progress=False, device="cpu")
    report = t.run(max_steps=4)
    rank = int(os.environ["RANK"])
    torch.save({"model": t.model.state_dict(), "ema": t.ema.module.state_dict(),
                "world": t.world_size, "step": t.step, "global_batch": t.global_batch},
               os.path.join(out, f"rank{rank}.pt"))
    t.close()
""")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("launcher", ["env", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_ddp_two_gloo_processes_end_identical(small_root, tmp_path, launcher):
    """Two CPU processes under gloo, started as torchrun starts them (its environment
    variables; the launcher itself in the slow variant): both end with identical weights."""
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    args = [str(script), str(small_root), str(out), TINY_ARCH]
    if launcher == "torchrun":
        procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   "--nproc-per-node", "2", *args], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    else:
        port = str(_free_port())
        procs = [subprocess.Popen([sys.executable, *args],
                                  env=dict(env, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                           LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                           MASTER_PORT=port),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in range(2)]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["world"] == r1["world"] == 2 and r0["step"] == r1["step"] == 4
    assert r0["global_batch"] == 8
    torch.testing.assert_close(r0["model"], r1["model"], rtol=0, atol=0)
    torch.testing.assert_close(r0["ema"], r1["ema"], rtol=0, atol=0)
    init = build_model(resolve_arch(TINY_ARCH))
    assert not torch.equal(r0["model"]["classifier.weight"], init.state_dict()["classifier.weight"])
    # only rank 0 wrote the run's files
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and report["status"] == "stopped"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "rank0.pt", "rank1.pt",
                                                    "report.json"]


# -- accuracy on small real data ---------------------------------------------------------------
def test_digits_accuracy_well_above_chance_and_loss_falls(digits_root, tmp_path):
    # The recipe with a short schedule: 4 epochs, warm-up 1 epoch, x0.7 every half epoch;
    # BN momentum 0.9 so that BN statistics settle within ~180 steps.
    cfg = TrainConfig(epochs=4, batch_size=32, warmup_epochs=1, decay_epochs=0.5, decay_rate=0.7,
                      lr_per_256=0.256, bn_momentum=0.9, crop_scale=(0.35, 1.0), num_workers=0,
                      ckpt_every_steps=0, eval_every=2)
    report = train(DIGITS_ARCH, digits_root, cfg, tmp_path / "digits", progress=False)
    assert report["status"] == "completed" and report["epochs"] == 4
    assert report["top1_ema"] > 0.6 and report["top1"] > 0.6      # chance is 0.1
    assert report["top5"] > report["top1"]
    rows = json.loads((tmp_path / "digits" / "metrics.json").read_text())["epochs"]
    assert len(rows) == 4 and "val_top1" not in rows[0] and rows[1]["val_top1"] > 0.1
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.5
    assert report["images_per_s"] > 0 and 350 <= report["n_val"] <= 370
    assert {"checkpoint.pt", "final.pt", "metrics.csv", "metrics.json", "report.json"} <= {
        p.name for p in (tmp_path / "digits").iterdir()}


# -- proxy --------------------------------------------------------------------------------------
def test_proxy_accuracy_is_cached_by_canonical_arch(small_root, tmp_path, monkeypatch):
    cfg = _tiny_cfg(epochs=1)
    cache_dir = tmp_path / "cache"
    acc = proxy_accuracy(TINY_ARCH, small_root, epochs=1, holdout=3, cache_dir=cache_dir, cfg=cfg)
    assert 0.0 <= acc <= 1.0
    files = list(cache_dir.glob("proxy_*.jsonl"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert rec["arch"] == format_arch(resolve_arch(TINY_ARCH)) and rec["n_val"] == 30
    assert not (cache_dir / "runs").exists() or not any((cache_dir / "runs").iterdir())

    def no_training(*a, **k):
        raise AssertionError("trained twice")

    monkeypatch.setattr("search.train.loop.train", no_training)
    assert proxy_accuracy(resolve_arch(TINY_ARCH), small_root, epochs=1, holdout=3,
                          cache_dir=cache_dir, cfg=cfg) == acc
    # a torn last line is skipped, and the next append is fenced off from it
    with open(files[0], "a") as f:
        f.write('{"arch": "r1_k3_s11_e1_i32_o16", "accur')
    cache = JsonlCache(files[0])
    assert set(cache.load()) == {rec["arch"]}
    cache.append({"arch": "x", "accuracy": 0.5})
    with pytest.warns(UserWarning, match="unreadable line 2"):
        assert set(cache.load()) == {rec["arch"], "x"}


def test_proxy_train_is_an_accuracy_objective(small_root, tmp_path, monkeypatch):
    accuracy = pytest.importorskip("search.accuracy")
    obj = accuracy.get_accuracy("proxy-train", data=small_root)
    assert obj.name == "proxy-train" and obj.space.name == "mnasnet"
    seen = []

    def fake(arch, data_dir, *a, **k):
        seen.append(format_arch(arch))
        return 0.25

    monkeypatch.setattr("search.accuracy.proxy.proxy_accuracy", fake)
    assert obj("mnasnet-a1") == 0.25 and obj("mnasnet-a1") == 0.25
    assert len(seen) == 1 and obj.fingerprint.startswith("proxy_")
    with pytest.raises(ValueError, match="needs"):
        accuracy.get_accuracy("proxy-train")


# -- CLI -------------------------------------------------------------------------------------------
def _cli(argv):
    from search.train.cli import register
    from space.cli import OneLineParser

    parser = OneLineParser(prog="mnas")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_json(small_root, tmp_path, capsys):
    out = tmp_path / "run"
    rc = _cli(["train", TINY_ARCH, "--data", str(small_root), "--epochs", "1", "--batch-size", "8",
               "--lr-per-256", "0.1", "--out", str(out), "--seed", "1", "--workers", "0",
               "--no-progress", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "completed" and report["steps"] == 15
    assert report["peak_lr"] == pytest.approx(0.1 * 8 / 256)
    assert (out / "metrics.csv").is_file()
    from space.cli import UsageError

    with pytest.raises(FileNotFoundError, match="nowhere"):
        _cli(["train", TINY_ARCH, "--data", str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="unknown architecture"):
        _cli(["train", "mnasnet-zz", "--data", str(small_root)])
    with pytest.raises(UsageError):
        _cli(["train", TINY_ARCH, "--data", str(small_root), "--epochs", "0"])


# -- benchmark script ------------------------------------------------------------------------------
def test_bench_script_runs_on_cpu(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_gpu_bench", REPO / "bench" / "train_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--device", "cpu", "--arch", TINY_ARCH, "--steps", "2", "--batch-size", "4",
                       "--out", str(tmp_path)]) == 0
    assert "images/s" in capsys.readouterr().out
    doc = json.loads((tmp_path / "train_throughput.json").read_text())
    assert doc["runs"][0]["device"] == "cpu" and doc["runs"][0]["images_per_s"] > 0
    assert "CPU:" in (tmp_path / "train_throughput.md").read_text()
