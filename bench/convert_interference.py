"""Does converting on one core disturb timings pinned to another?

The table jobs convert (litert-torch) on the free cores while timing is pinned to the
last one. This benchmark times the same cached cpu-litert models pinned to the timing
core in alternating blocks: ``quiet`` (nothing else runs) and ``converting`` (a
litert-torch conversion loop runs on the other cores, as during a table job). It
reports, per model, the ratio of the two medians, and over models the median ratio
and the share within +-1/2/5 %. Run it on an otherwise idle machine.

    python bench/convert_interference.py --blocks 6
"""
from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import base_parser, md_table, write_results  # noqa: E402


def _convert_forever(stop, cpus: list[int], cache_dir: str) -> None:  # runs in a child
    os.sched_setaffinity(0, set(cpus))
    import torch

    torch.set_num_threads(1)
    from space.build import build_op, op_input_shape
    from space.spaces import get_space
    from surrogate.measure.export import ExportCache

    ops = get_space("mnasnet").operator_configs()
    cache = ExportCache(cache_dir)
    i = 0
    while not stop.is_set():
        lc = ops[(i * 37) % len(ops)]
        cache.export(build_op(lc), op_input_shape(lc), "tflite")
        for p in Path(cache_dir).glob("*.tflite"):  # keep converting: never a cache hit
            p.unlink()
        i += 1


def main(argv=None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=6, help="quiet/converting block pairs")
    ap.add_argument("--ops", type=int, default=16, help="anb operators timed")
    ap.add_argument("--nets", type=int, default=4, help="anb networks timed (cached ones first)")
    args = ap.parse_args(argv)
    if args.blocks < 1 or args.ops < 0 or args.nets < 0 or args.ops + args.nets < 1:
        ap.error("--blocks must be >= 1 and --ops + --nets >= 1")
    started = dt.datetime.now(dt.timezone.utc)

    from space.build import build_model, build_op, input_shape, op_input_shape
    from space.spaces import get_space
    from surrogate.measure.export import ExportCache
    from surrogate.measure.profiles import get_profile, make_runner

    prof = get_profile("cpu-litert")
    runner = make_runner(prof, ExportCache())
    free = runner.free_cpus()
    if not free:
        raise SystemExit("needs at least 2 cores: one converting, one timing")
    sp = get_space("anb")
    rng = np.random.default_rng(args.seed)
    items = []
    ops = sp.operator_configs()
    for j in rng.choice(len(ops), size=min(args.ops, len(ops)), replace=False):
        lc = ops[int(j)]
        items.append((lc.key(), build_op(lc), op_input_shape(lc)))
    for k, idx in enumerate(sp.sample_indices(np.random.default_rng(0), args.nets)):
        a = sp.to_arch(idx)
        items.append((f"net{k}", build_model(a), input_shape(a)))
    print(f"converting/loading {len(items)} models (cached ones are instant) ...", flush=True)
    handles = [(name, runner.load(m, shp, name=name[:40])) for name, m, shp in items]
    runner.ensure_pinned()
    ctx = mp.get_context("spawn")
    times: dict[str, dict[str, list[float]]] = {n: {"quiet": [], "converting": []} for n, _ in handles}
    with tempfile.TemporaryDirectory() as tmp:
        for b in range(args.blocks):
            for cond in (("quiet", "converting") if b % 2 == 0 else ("converting", "quiet")):
                stop, proc = ctx.Event(), None
                if cond == "converting":
                    proc = ctx.Process(target=_convert_forever, args=(stop, free, tmp), daemon=True)
                    proc.start()
                    time.sleep(8.0)  # past import, into conversion
                for name, h in handles:
                    times[name][cond].append(float(np.median(runner.time(h, 10, 30))))
                if proc is not None:
                    stop.set()
                    proc.join(60)
                    if proc.is_alive():
                        proc.kill()
                print(f"block {b + 1}/{args.blocks} {cond} done", flush=True)
    rows, ratios = [], []
    for name, d in times.items():
        q, c = float(np.median(d["quiet"])), float(np.median(d["converting"]))
        ratios.append(c / q)
        rows.append([name[:48], f"{q:.3f}", f"{c:.3f}", f"{c / q:.3f}"])
    r = np.array(ratios)
    dev = np.abs(r - 1)
    summary = {"n_models": len(r), "blocks": args.blocks, "median_ratio": float(np.median(r)),
               "mean_ratio": float(np.mean(r)), "max_abs_dev": float(dev.max()),
               "within_1pct": float(np.mean(dev <= 0.01)), "within_2pct": float(np.mean(dev <= 0.02)),
               "within_5pct": float(np.mean(dev <= 0.05)), "timing_cpu": runner.pinned_core,
               "converter_cpus": free}
    md = ("# Conversion on another core vs timing (cpu-litert)\n\n"
          f"{len(r)} models, {args.blocks} alternating block pairs; median over blocks of each "
          "block's median of 30 runs.\n\n"
          f"Median ratio converting/quiet **{summary['median_ratio']:.3f}**; within +-1%: "
          f"{summary['within_1pct']:.0%}, +-2%: {summary['within_2pct']:.0%}, +-5%: "
          f"{summary['within_5pct']:.0%}; max |dev| {summary['max_abs_dev']:.1%}.\n\n"
          + md_table(["model", "quiet ms", "converting ms", "ratio"], rows))
    write_results("convert_interference", {"summary": summary, "per_model": times}, md, args.out,
                  seeds=[args.seed], config=vars(args), started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
