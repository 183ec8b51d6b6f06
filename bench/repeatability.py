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
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogate.measure.retime import compare_tables, retime_table  # noqa: E402
from surrogate.tables import Table, table_path, write_json_atomic  # noqa: E402


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
    write_json_atomic(out / f"repeatability_{profile}_{space}_{kind}.json", res)
    head = ("| profile | space | pass | clock | n | median abs diff | p95 abs diff | within 1% | within 2% | "
            "within 5% | within 10% | median ratio |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    clock, est = res["clock"] or ("?", "?")
    md = head + "".join(
        f"| {profile} | {space} | {'idle vs busy' if busy else 'idle vs idle'} | {label} | {d['n']} | "
        f"{100 * d['median_abs_rel_diff']:.2f}% | {100 * d['p95_abs_rel_diff']:.2f}% | "
        f"{100 * d['within_1pct']:.0f}% | {100 * d['within_2pct']:.0f}% | {100 * d['within_5pct']:.0f}% | "
        f"{100 * d['within_10pct']:.0f}% | {d['median_ratio_second_over_first']:.3f} |\n"
        for label, d in ((f"{clock}/{est} (the table's latency)", res["latency"]), (f"wall/{est}", res["wall"])))
    (out / f"repeatability_{profile}_{space}_{kind}.md").write_text(md)
    print(md)
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
    print(json.dumps(repeatability(args.profile, args.space, args.n, out, args.tables,
                                   progress=not args.no_progress, busy=args.busy), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
