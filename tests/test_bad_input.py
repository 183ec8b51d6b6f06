"""Bad input to ``mnas space sample``, ``fit``, ``predict``, ``suggest-timings``, ``eval``
and ``train``: one line on stderr naming the option or file, exit code 2, no traceback,
and nothing written; a pickle payload is refused without being run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import space

ROOT = Path(space.__file__).resolve().parents[1]   # the checkout whose code the CLI runs
ANB_SOURCES = "tpuv2,a100"                           # predict-only devices of space anb
TINY_ARCH = "res16_stem8_head32_cls10:r1_k3_s11_e1_i8_o8,r1_k3_s22_e3_i8_o16_se0.25"


def _tree(folder: Path) -> dict:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


@pytest.fixture()
def work(tmp_path):
    """An empty working folder (the CLI's cwd) and its cache folder beside it."""
    d = tmp_path / "work"
    d.mkdir()
    (tmp_path / "cache").mkdir()
    return d


def refused(work: Path, *args, needles=(), watch: Path | None = None) -> str:
    """Run ``mnas ARGS`` in ``work``; assert exit code 2, one stderr line holding every
    needle, no traceback, and that neither ``work`` nor ``watch`` changed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNAS_CACHE_DIR": str(work.parent / "cache")}
    before = {w: _tree(w) for w in (work, watch) if w is not None}
    p = subprocess.run([sys.executable, "-m", "search.cli", *map(str, args)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr[-3000:]
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    for w, tree in before.items():
        assert _tree(w) == tree, f"{w} changed"
    return lines[0]


@pytest.fixture()
def files(work):
    """A file, a binary file and an empty file, in a folder beside ``work``."""
    d = work.parent / "inputs"
    d.mkdir()
    (d / "plain.txt").write_text("hello\n")
    (d / "binary.bin").write_bytes(b"\xff\xfe\x00\x81 binary \x00\x9c" * 32)
    (d / "empty.txt").write_bytes(b"")
    (d / "folder").mkdir()
    return d


# -- mnas space sample ------------------------------------------------------------------
def test_sample_count_is_capped(work):
    line = refused(work, "space", "sample", "anb", "-n", "100000000000000", needles=["-n"])
    assert "100000000000000" in line and "1,000,000" in line


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_sample_seed_names_the_option_and_range(work, seed):
    refused(work, "space", "sample", "anb", "--seed", seed, needles=["--seed", "2**32-1", seed])


def test_suggest_seed_names_the_option(work):
    refused(work, "suggest-timings", "--space", "anb", "--seed", "-1", needles=["--seed", "2**32-1"])


# -- outputs under a file ---------------------------------------------------------------
def test_fit_output_under_a_file(work, files):
    target = files / "plain.txt" / "pred"
    refused(work, "fit", "--profile", "cpu-litert", "--space", "anb", "-o", target,
            needles=["-o/--output", target, files / "plain.txt"], watch=files)


def test_fit_output_that_is_a_file(work, files):
    refused(work, "fit", "--profile", "cpu-litert", "--space", "anb", "--output",
            files / "plain.txt", needles=["--output", "is a file"], watch=files)


def test_eval_plot_under_a_file(work, files):
    target = files / "plain.txt" / "sub" / "plot.png"
    refused(work, "eval", "--profile", "cpu-litert", "--space", "anb", "--plot", target,
            needles=["--plot", target], watch=files)


# -- predictors and checkpoints never unpickle ------------------------------------------
def _write_payload(path: Path, marker: Path) -> None:
    """A torch file whose unpickling would run ``touch marker``."""
    code = ("import os, sys, torch\n"
            "class Payload:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('touch ' + sys.argv[2],))\n"
            "torch.save({'weight': Payload()}, sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(path), str(marker)], check=True, timeout=300)
    assert path.is_file() and not marker.exists()


def test_predictor_with_a_pickle_payload_is_refused_unrun(work, tmp_path):
    pytest.importorskip("torch")
    from space import get_space
    from surrogate.predict.workflow import default_predictor_dir

    pred = tmp_path / "pred"
    shutil.copytree(default_predictor_dir("cpu-onnxruntime", "nasbench-macro"), pred)
    assert (pred / "model.pt").is_file()           # an MLP predictor: weights in model.pt
    marker = tmp_path / "payload-ran"
    _write_payload(pred / "model.pt", marker)
    member = str(get_space("nasbench-macro").to_arch(get_space("nasbench-macro").sample_indices(
        __import__("numpy").random.default_rng(0), 1)[0]))
    line = refused(work, "predict", "--predictor", pred, "--space", "nasbench-macro", member,
                   needles=[pred / "model.pt", "not a weights-only tensor file"], watch=pred)
    assert "weights_only" not in line and not marker.exists()


def test_training_checkpoint_with_a_pickle_payload_is_refused_without_torchs_advice(work, tmp_path):
    pytest.importorskip("torch")
    Image = pytest.importorskip("PIL.Image")

    data = tmp_path / "img"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (data / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(data / split / c / f"{i}.png")
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "payload-ran"
    _write_payload(run / "checkpoint.pt", marker)
    line = refused(work, "train", TINY_ARCH, "--data", data, "--out", run, "--batch-size", "2",
                   "--workers", "0", "--device", "cpu", "--no-progress",
                   needles=[run / "checkpoint.pt", "holds objects other than tensors",
                            "will not be unpickled"], watch=run)
    assert "weights_only" not in line and "likely succeed" not in line and not marker.exists()


# -- input files (the ``missing`` cases were right before these fixes: kept as guards) --
@pytest.mark.parametrize("name, needle", [("binary.bin", "not a UTF-8 text file of arch,ms rows"),
                                          ("empty.txt", "empty"),
                                          ("folder", "is a folder"),
                                          ("missing.csv", "does not exist")])
def test_fit_timings_file(work, files, name, needle):
    f = files / name
    refused(work, "fit", "--space", "anb", "--transfer-from", ANB_SOURCES, "--timings", f,
            "-o", work / "out", needles=["--timings", f, needle], watch=files)


@pytest.mark.parametrize("name, needle", [("binary.bin", "not a UTF-8 text file"),
                                          ("empty.txt", "holds no architectures (expected one "
                                                        "string or name a line)"),
                                          ("folder", "is a folder"),
                                          ("missing.txt", "does not exist")])
def test_predict_archs_file(work, files, name, needle):
    f = files / name
    refused(work, "predict", "--profile", "cpu-litert", "--space", "anb", "--archs", f,
            needles=["--archs", f, needle], watch=files)


def test_suggest_pool_names_the_option(work, files):
    f = files / "empty.txt"
    line = refused(work, "suggest-timings", "--space", "anb", "--pool", f,
                   needles=["--pool", f, "holds no architectures"], watch=files)
    assert "--archs" not in line
