"""Repeatability of end-to-end timings: the noise floor predictors are judged against.

Re-times the first N architectures of ``<space>_models.csv`` in a separate run
(into ``<space>_models_repeat.csv``, resumable) and compares the two medians per
architecture: median |relative difference|, share within +-5% and +-10%.

    python bench/repeatability.py --profile cpu-litert --space anb -n 100
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogate.measure.jobs import measure_models, tables_dir  # noqa: E402
from surrogate.tables import Table, write_json_atomic  # noqa: E402


def repeatability(profile: str, space: str, n: int, out: Path, root=None, progress=True) -> dict:
    from space.blockstring import parse_arch

    base = tables_dir(root) / profile / f"{space}_models.csv"
    rows = Table.models(base).read()
    if len(rows) < n:
        raise SystemExit(f"{base} has {len(rows)} rows; need {n} to re-time")
    first = rows[:n]
    summary = measure_models(profile, space, [(parse_arch(r["arch"]), "repeat") for r in first],
                             out_dir=root, progress=progress, table_name=f"{space}_models_repeat.csv")
    again = {r["arch"]: r for r in
             Table.models(tables_dir(root) / profile / f"{space}_models_repeat.csv").read()}
    pairs = [(r, again[r["arch"]]) for r in first if r["arch"] in again]
    a = np.array([r["median_ms"] for r, _ in pairs])
    b = np.array([q["median_ms"] for _, q in pairs])
    # the same, each timing divided by its chunk's reference-operator median (machine drift)
    an = a / np.array([r["ref_ms"] for r, _ in pairs])
    bn = b / np.array([q["ref_ms"] for _, q in pairs])

    def stats(x, y) -> dict:
        rel = np.abs(y / x - 1)
        return {"median_abs_rel_diff": float(np.median(rel)), "mean_abs_rel_diff": float(np.mean(rel)),
                "within_5pct": float(np.mean(rel <= 0.05)), "within_10pct": float(np.mean(rel <= 0.10)),
                "median_ratio_second_over_first": float(np.median(y / x))}

    res = {"profile": profile, "space": space, "n": int(len(a)), **stats(a, b),
           "reference_normalised": stats(an, bn),
           "reference_ms_range": [float(min(np.min(a / an), np.min(b / bn))),
                                  float(max(np.max(a / an), np.max(b / bn)))],
           "rerun_wall_s": summary.wall_s}
    write_json_atomic(out / f"repeatability_{profile}_{space}.json", res)
    rn = res["reference_normalised"]
    md = ("| profile | space | n | timings | median abs diff | mean abs diff | within 5% | within 10% | "
          "median ratio |\n|---|---|---|---|---|---|---|---|---|\n"
          + "".join(f"| {profile} | {space} | {res['n']} | {label} | {100 * d['median_abs_rel_diff']:.2f}% | "
                    f"{100 * d['mean_abs_rel_diff']:.2f}% | {100 * d['within_5pct']:.0f}% | "
                    f"{100 * d['within_10pct']:.0f}% | {d['median_ratio_second_over_first']:.3f} |\n"
                    for label, d in (("raw", res), ("/ reference op", rn)))
          + f"\nReference operator median per chunk ranged {res['reference_ms_range'][0]:.3f}-"
            f"{res['reference_ms_range'][1]:.3f} ms over the two runs (machine drift).\n")
    (out / f"repeatability_{profile}_{space}.md").write_text(md)
    print(md)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-litert")
    ap.add_argument("--space", default="anb")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--tables", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (logs)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(repeatability(args.profile, args.space, args.n, out, args.tables,
                                                progress=not args.no_progress), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
