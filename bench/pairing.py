"""Does pairing each timing with the reference operator make network latencies repeat?

Re-times the first N networks of ``<space>_models.csv`` three times with the
reference-paired estimator (``min+ref``): twice on an idle machine (separate
passes, minutes apart) and once while a busy loop runs on every core. Each pass
records the raw latency (``cpu_ms``: min per round, median over rounds, the
shipped tables' method) beside the paired one (``median_ms``), so the two methods
are compared on the same runs. Tables go beside the base table
(``<space>_models_pair-idle1.csv``, ``..._pair-idle2.csv``, ``..._pair-busy.csv``;
resumable: delete them to start over).

    python bench/pairing.py --space mnasnet -n 200
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

PASSES = (("idle1", False), ("idle2", False), ("busy", True))
METHODS = (("raw (cpu, min per round)", "cpu_ms"), ("paired (min+ref)", "median_ms"))


def pairing(profile: str, space: str, n: int, out: Path, root=None, progress=True) -> dict:
    base = table_path(profile, space, "models", root)
    rows, walls = {}, {}
    for tag, busy in PASSES:
        dst = table_path(profile, space, "models", root, tag=f"pair-{tag}")
        s = retime_table(profile, base, n, dst.name, busy=busy, progress=progress, estimator="min+ref")
        rows[tag] = Table.models(dst).read()
        walls[tag] = s.wall_s
    res = {"profile": profile, "space": space, "n": n, "estimator": "min+ref", "pass_wall_s": walls,
           "comparisons": {}}
    cells = []
    for label, (a, b) in (("idle vs idle", ("idle1", "idle2")), ("idle vs busy", ("idle1", "busy"))):
        res["comparisons"][label] = per = {m: compare_tables(rows[a], rows[b], col) for m, col in METHODS}
        cells += [[space, label, m, str(d["n"]), fmt(d["median_abs_rel_diff"], "pct"),
                   fmt(d["p95_abs_rel_diff"], "pct"), fmt(d["within_2pct"], "pct"),
                   fmt(d["within_5pct"], "pct"), fmt(d["within_10pct"], "pct"),
                   fmt(d["median_ratio_second_over_first"])] for m, d in per.items()]
    md = md_table(["space", "passes", "method", "n", "median abs diff", "p95 abs diff", "within 2%",
                   "within 5%", "within 10%", "median ratio"], cells)
    write_results(f"pairing_{profile}_{space}", res, md, out)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-litert")
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--tables", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    pairing(args.profile, args.space, args.n, Path(args.out), args.tables, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
