"""Repeatability of end-to-end timings: the noise floor predictors are judged against.

Re-times the first N networks of ``<space>_models.csv`` in a separate process, with
the table's own protocol, into ``<space>_models_repeat.csv`` (or, with ``--busy``,
while a busy loop runs on every core, into ``<space>_models_busy.csv``; resumable),
and compares the two latencies per network (``surrogate.measure.retime``).

    python bench/repeatability.py --space anb -n 200
    python bench/repeatability.py --space anb -n 200 --busy
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, md_table, write_results  # noqa: E402
from surrogate.measure.retime import compare_tables, retime_table  # noqa: E402
from surrogate.tables import Table, table_path  # noqa: E402


def repeatability(profile: str, space: str, n: int, out: Path, root=None, progress=True,
                  busy: bool = False) -> dict:
    base = table_path(profile, space, "models", root)
    kind = "busy" if busy else "repeat"
    dst = table_path(profile, space, "models", root, tag=kind)
    summary = retime_table(profile, base, n, dst.name, busy=busy, progress=progress)
    first = Table.models(base).read()[:n]
    again = Table.models(dst).read()
    res = {"profile": profile, "space": space, "kind": kind, "clock": Table.models(base).timing(),
           "latency": compare_tables(first, again, "median_ms"),
           "wall": compare_tables(first, again, "wall_ms"),
           "rerun_wall_s": summary.wall_s}
    clock, est = res["clock"] or ("?", "?")
    cells = [[profile, space, "idle vs busy" if busy else "idle vs idle", label, str(d["n"]),
              fmt(d["median_abs_rel_diff"], "pct"), fmt(d["p95_abs_rel_diff"], "pct"),
              fmt(d["within_1pct"], "pct"), fmt(d["within_2pct"], "pct"), fmt(d["within_5pct"], "pct"),
              fmt(d["within_10pct"], "pct"), fmt(d["median_ratio_second_over_first"])]
             for label, d in ((f"{clock}/{est} (the table's latency)", res["latency"]),
                              (f"wall/{est}", res["wall"]))]
    md = md_table(["profile", "space", "pass", "clock", "n", "median abs diff", "p95 abs diff",
                   "within 1%", "within 2%", "within 5%", "within 10%", "median ratio"], cells)
    write_results(f"repeatability_{profile}_{space}_{kind}", res, md, out)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-litert")
    ap.add_argument("--space", default="anb")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--busy", action="store_true", help="re-time while a busy loop runs on every core")
    ap.add_argument("--tables", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (logs)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeatability(args.profile, args.space, args.n, out, args.tables, progress=not args.no_progress,
                  busy=args.busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
