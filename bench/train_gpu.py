#!/usr/bin/env python
"""Training throughput (images/s) of an architecture on synthetic data.

Times the trainer's full step -- uint8 batch normalised on the device, forward,
label-smoothed loss, backward, TF-style RMSProp update, EMA update -- for mnasnet-a1
at 224 by default, in fp32 and in AMP (fp16 autocast + GradScaler) with
channels-last. Modes are interleaved over rounds and the median round is reported
(single loops on shared GPUs drift by 10% or more).

    python bench/train_gpu.py                          # CUDA: batch 256, 3 rounds x 30 steps
    python bench/train_gpu.py --device cpu --steps 3   # quick CPU check (batch 8, fp32)

Results merge into ``bench/results/train_throughput.json`` (one entry per device,
mode, arch, resolution and batch; a rerun replaces its entry) and are rendered to
``train_throughput.md``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def _make_step(arch, device, mode: str, batch: int):
    import torch
    from torch import nn

    from search.train.data import normalization_constants, normalize
    from search.train.recipe import EMA, TrainConfig, make_optimizer, set_bn
    from space.build import build_model

    amp = mode == "amp"
    channels_last = amp
    cfg = TrainConfig()
    model = set_bn(build_model(arch, init_seed=0), cfg).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg, batch)
    for g in opt.param_groups:  # a realistic rate (the schedule's value after warm-up)
        g["lr"] = 0.016 * batch / 256
    ema = EMA(model, cfg.ema_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator(device="cpu").manual_seed(0)
    r = arch.resolution
    images = torch.randint(0, 256, (batch, 3, r, r), dtype=torch.uint8, generator=gen).to(device)
    labels = torch.randint(0, arch.num_classes, (batch,), generator=gen).to(device)

    mean, std = normalization_constants(device)

    def step():
        x = normalize(images, channels_last=channels_last, mean=mean, std=std)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = model(x)
        loss = crit(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        ema.update(model)
        return loss

    return step


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(arch, device, modes: list[str], batch: int, steps: int, warmup: int, rounds: int) -> dict:
    """Median images/s per mode over ``rounds`` interleaved rounds of ``steps`` steps."""
    steps_fn = {m: _make_step(arch, device, m, batch) for m in modes}
    for m in modes:
        for _ in range(warmup):
            steps_fn[m]()
        _sync(device)
    per_round: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(rounds):
        for m in modes:
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                loss = steps_fn[m]()
            _sync(device)
            dt = time.perf_counter() - t
            if not bool(loss.isfinite()):
                raise RuntimeError(f"{m}: loss became {float(loss)}")
            per_round[m].append(batch * steps / dt)
    return per_round


def _render_md(doc: dict) -> str:
    lines = ["# Training throughput (synthetic data)", "",
             doc.get("description", ""), "",
             "| device | arch | res | batch | mode | images/s (median) | rounds | steps/round "
             "| host load (1 min) | torch | date |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        lines.append(f"| {r['device_name']} | {r['arch']} | {r['resolution']} | {r['batch']} | "
                     f"{r['mode']} | {r['images_per_s']:,.1f} | {len(r['images_per_s_rounds'])} | "
                     f"{r['steps']} | {r.get('host_load_1m', '-')} | {r['torch']} | {r['date']} |")
    lines += ["", "Rows whose device starts with `CPU:` were measured on a CPU, not a GPU: they "
              "only show that the script runs (on a shared 2-core host whose load average is "
              "given; the background load slows them several-fold).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="mnasnet-a1")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 8 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round; 30 CUDA, 3 CPU")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per mode; 15 CUDA, 1 CPU")
    p.add_argument("--rounds", type=int, default=None, help="3 on CUDA, 1 on CPU")
    p.add_argument("--modes", default=None, help="comma list of fp32, amp; CUDA both, CPU fp32")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)

    import torch

    from space import format_arch, resolve_arch

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("CUDA is not available; use --device cpu")
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    arch = resolve_arch(args.arch)
    if args.resolution:
        arch = arch.replace(resolution=args.resolution, name=arch.name)
    batch = args.batch_size or (256 if cuda else 8)
    steps = args.steps or (30 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (15 if cuda else 1)
    rounds = args.rounds or (3 if cuda else 1)
    modes = (args.modes or ("fp32,amp" if cuda else "fp32")).split(",")
    for m in modes:
        if m not in ("fp32", "amp"):
            p.error(f"unknown mode {m!r} (fp32, amp)")

    per_round = measure(arch, dev, modes, batch, steps, warmup, rounds)
    load = os.getloadavg()[0]  # CPU figures on a shared host depend on it
    name = _device_name(dev)
    date = _dt.date.today().isoformat()
    new = []
    for m in modes:
        new.append({"device": dev.type, "device_name": name, "arch": args.arch if arch.name else
                    format_arch(arch), "resolution": arch.resolution, "batch": batch, "mode": m,
                    "amp": ("fp16 autocast + GradScaler, channels_last" if cuda else
                            "bf16 autocast, channels_last") if m == "amp" else "fp32",
                    "steps": steps, "warmup": warmup,
                    "images_per_s": statistics.median(per_round[m]),
                    "images_per_s_rounds": per_round[m], "torch": torch.__version__, "date": date,
                    "host_load_1m": round(load, 2)})
        print(f"{name} {args.arch} @ {arch.resolution} batch {batch} {m}: "
              f"{statistics.median(per_round[m]):,.1f} images/s "
              f"(rounds: {', '.join(f'{v:,.1f}' for v in per_round[m])})")

    from surrogate.atomic import write_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_throughput.json"
    doc = {"description": "Full training step of search.train (normalise, forward, label-smoothed "
                          "loss, backward, RMSProp-TF, EMA) on synthetic uint8 images; median of "
                          "interleaved rounds. Produced by bench/train_gpu.py.", "runs": []}
    if path.is_file():
        try:
            doc["runs"] = json.loads(path.read_text())["runs"]
        except (ValueError, KeyError):
            pass
    keys = {(r["device_name"], r["arch"], r["resolution"], r["batch"], r["mode"]) for r in new}
    doc["runs"] = [r for r in doc["runs"]
                   if (r["device_name"], r["arch"], r["resolution"], r["batch"], r["mode"]) not in keys] + new
    for target, text in ((path, json.dumps(doc, indent=1) + "\n"),
                         (out / "train_throughput.md", _render_md(doc))):
        write_atomic(target, text)
    print(f"wrote {path} and {out / 'train_throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
