"""Which clock and per-round estimator repeat best on this machine (cpu-onnxruntime).

Times N operators of a space plus the reference operator in three separate
processes: two idle passes ``--gap`` seconds apart, then one while a busy loop
(``python -c 'while 1: pass'``) runs on every allowed core. Every run is kept on
both clocks (wall ``perf_counter_ns``, thread CPU ``thread_time_ns``). For each clock
and estimator (median, p25, p10, min per round, then the median over rounds) it
reports the median |difference| between passes and the share within 1/2/5 %, the
quiet-core cpu/wall ratio, and picks the estimator per
:func:`surrogate.measure.repeatability.pick_estimator`.

    python bench/clock_estimator.py            # about 3-4 minutes
    python bench/clock_estimator.py --quick    # smoke test: tiny, no gap
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, md_table, write_results  # noqa: E402  (adds the repo to sys.path)

from surrogate.measure import repeatability as rep  # noqa: E402
from surrogate.measure.clocks import RAW_ESTIMATORS as ESTIMATORS  # noqa: E402

PASSES = ("idle1", "idle2", "busy")
PAIRS = (("idle1", "idle2"), ("idle1", "busy"), ("idle2", "busy"))


def _child(args) -> int:
    items = rep.sample_ops(args.space, args.n, args.seed)
    res = rep.time_pass(args.profile, items, rounds=args.rounds, runs=args.runs, warmup=args.warmup,
                        seed=args.seed + PASSES.index(args.child), cache_dir=args.cache)
    Path(args.pass_out).write_text(json.dumps(res))
    return 0


def _convert(args) -> None:
    """Export every item once in this process, so no pass converts."""
    from space.build import build_op, op_input_shape
    from surrogate.measure.export import ExportCache

    cache = ExportCache(args.cache)
    for _, lc in rep.sample_ops(args.space, args.n, args.seed):
        cache.export(build_op(lc), op_input_shape(lc), "onnx")


def _run_pass(name: str, args, tmp: Path) -> dict:
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--pass-out", str(out),
           *(f"--{k}={getattr(args, k)}" for k in ("profile", "space", "n", "rounds", "runs", "warmup",
                                                   "seed"))]
    if args.cache:
        cmd.append(f"--cache={args.cache}")
    busy = []
    if name == "busy":  # one spinning process per allowed core, the timing core included
        busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                for _ in range(len(os.sched_getaffinity(0)))]
        time.sleep(1.0)
    try:
        subprocess.run(cmd, check=True)
    finally:
        for p in busy:
            p.terminate()
        for p in busy:
            p.wait()
    print(f"pass {name} done", file=sys.stderr, flush=True)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-onnxruntime")
    ap.add_argument("--space", default="anb")
    ap.add_argument("-n", "--n", type=int, default=24, help="operators of the space (plus the reference op)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--gap", type=float, default=60.0, help="seconds between the two idle passes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="export cache (default $MNAS_CACHE_DIR or ~/.cache)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--quick", action="store_true", help="4 operators, 2 rounds x 10 runs, no gap")
    ap.add_argument("--child", choices=PASSES, help=argparse.SUPPRESS)
    ap.add_argument("--pass-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    if args.quick:
        args.n, args.rounds, args.runs, args.warmup, args.gap = 4, 2, 10, 2, 0.0
    t0 = time.perf_counter()
    _convert(args)
    with tempfile.TemporaryDirectory(prefix="clock_estimator_") as tmp:
        passes = {}
        for name in PASSES:
            if name == "idle2":
                time.sleep(args.gap)
            passes[name] = _run_pass(name, args, Path(tmp))
    runs = {k: v["runs"] for k, v in passes.items()}
    rows = rep.repeatability_table(runs, PAIRS, reference="reference")
    picked, score = rep.pick_estimator(rows, "cpu")
    wall_picked, wall_score = rep.pick_estimator(rows, "wall")
    ratio = {k: rep.cpu_wall_ratio(runs[k]) for k in PASSES}
    results = {
        "profile": args.profile, "space": args.space, "items": len(runs["idle1"]),
        "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup, "gap_s": args.gap,
        "busy_processes": len(os.sched_getaffinity(0)),
        "comparisons": rows, "cpu_wall_ratio": ratio,
        "picked_estimator_cpu": picked, "score_cpu": score,
        "picked_estimator_wall": wall_picked, "score_wall": wall_score,
        "rule": rep.PICK_RULE,
        "pass_info": {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in passes.items()},
        "latency_ms": rep.latencies(runs), "runs_file": "clock_estimator_runs.json",
        "total_s": round(time.perf_counter() - t0, 1),
    }
    table_rows = [[r["clock"], r["estimator"], r["pair"], f"{100 * r['median_abs_diff']:.2f}%",
                   f"{100 * r['within_1pct']:.0f}%", f"{100 * r['within_2pct']:.0f}%",
                   f"{100 * r['within_5pct']:.0f}%", f"{100 * r['ref_norm_median_abs_diff']:.2f}%",
                   f"{100 * r['ref_norm_within_2pct']:.0f}%"] for r in rows]
    md = (f"# Clock and estimator repeatability ({args.profile}, {len(runs['idle1'])} {args.space} "
          f"operators incl. the reference op, {args.rounds} rounds x {args.runs} runs)\n\n"
          + md_table(["clock", "estimator", "passes", "median abs diff", "within 1%", "within 2%",
                      "within 5%", "/ ref: median abs diff", "/ ref: within 2%"], table_rows)
          + "\n\n'/ ref': each latency divided by the same pass's reference-operator latency "
            "(same clock and estimator), which removes a slowdown shared by the whole pass."
          + "\n\ncpu/wall latency ratio per item (median estimator): "
          + ", ".join(f"{k} median {v['median']:.3f} (p5 {v['p5']:.3f}, p95 {v['p95']:.3f}; "
                      f"cpu - wall median {v['median_diff_us']:.2f} us)" for k, v in ratio.items())
          + "\n\nOther processes' load (cores) per pass: "
          + ", ".join(f"{k} {v['other_cpu_cores']:.2f}" if v["other_cpu_cores"] is not None else f"{k} n/a"
                      for k, v in passes.items())
          + "\n\nScore (worst median abs diff over the three pairs), cpu clock: "
          + ", ".join(f"{e} {100 * score[e]:.2f}%" for e in ESTIMATORS)
          + "; wall clock: " + ", ".join(f"{e} {100 * wall_score[e]:.2f}%" for e in ESTIMATORS)
          + f"\n\n**Picked estimator (cpu clock): {picked}** ({results['rule']})\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # every run of every pass, compact: one line per pass and item
    lines = [json.dumps({"pass": k, "item": item, **v}, separators=(",", ":"))
             for k, p in runs.items() for item, v in p.items()]
    (out / "clock_estimator_runs.json").write_text("[\n" + ",\n".join(lines) + "\n]\n")
    write_results("clock_estimator", results, md, out=out, seeds=[args.seed],
                  config={k: getattr(args, k) for k in ("profile", "space", "n", "rounds", "runs",
                                                        "warmup", "gap", "quick")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
