"""Published phone timings priced from this host's operator times.

Every device setting with enough expressible rows from one source is a group
(:func:`surrogate.predict.phonetruth.truth_groups`). For each group, in one run:
leave-one-out MAPE, the largest LOO error, Spearman of the LOO predictions, and the
median MAPE over 20 draws of K = 3 and K = 5 timings (scored on the rest), for the
cross-device predictor (prior learned on the *other* devices) and the baselines:
FLOPs log-linear, one ratio on our host ms, log-linear on our host ms, the old
``published_pixel`` method (log-linear on measured end-to-end host ms), a
MAdds + bytes roofline. The method is chosen by the median K = 5 MAPE over the fp32 CPU groups,
each scored with a prior that never saw its device. Also: how far two sources
disagree on the same network and device (a floor no predictor can beat), the shipped
prior (``--ship``) and a plot of LOO predictions against the published figures.

    python bench/published_phones.py [--ship]
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import base_parser, fmt, md_table, write_results  # noqa: E402

from surrogate.datasets import load_published_phones  # noqa: E402
from surrogate.predict.crossdevice import SHIPPED_PRIORS  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402
from surrogate.predict.phonetruth import (BASELINES, CHOSEN, add_features,  # noqa: E402
                                          evaluate_group, truth_groups, truth_prior)
from surrogate.tables import Table, table_path  # noqa: E402

SCHEMES = ("kernel", "kernel-se")
TARGET_ROWS = 8


def source_floor(df) -> list[dict]:
    """Same network, device and dtype from two sources: their relative difference."""
    d = df[df["arch"].notna()].copy()
    d["dtype"] = d["dtype"].fillna("unstated")
    out = []
    for (arch, dev, dt_), g in d.groupby(["arch_name", "device", "dtype"]):
        by = g.groupby("source")["latency_ms"].median()
        for a, b in itertools.combinations(sorted(by.index), 2):
            out.append({"network": arch, "device": dev, "dtype": dt_, "sources": f"{a} / {b}",
                        "rel_diff": float(abs(by[a] / by[b] - 1))})
    return out


def plot(groups, res, path: Path) -> None:
    from matplotlib.figure import Figure

    keys = [k for k in groups if groups[k].dtype == "fp32"][:12]
    cols = 4
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4 * cols, 3.6 * rows), dpi=90)
    for i, k in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        g = groups[k]
        p = np.asarray(res[k][CHOSEN]["loo_pred"])
        ax.loglog(g.y, p, "o", ms=3)
        lo, hi = min(g.y.min(), p.min()) * 0.9, max(g.y.max(), p.max()) * 1.1
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.set_title(k.replace("mobile_ml_benchmark", "mlb"), fontsize=7)
        ax.tick_params(labelsize=6)
    fig.supxlabel("published ms")
    fig.supylabel("predicted ms (leave-one-out)")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--shared", default=None, help="the shared folder (default ../shared)")
    ap.add_argument("--min-rows", type=int, default=6, help="smallest group evaluated")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--ship", action="store_true", help="write the shipped priors")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    df = load_published_phones(args.shared)
    table = OpTable.from_csv(table_path("cpu-litert", "reference", "ops"))
    e2e = {r["arch"]: r["median_ms"] for r in Table.models(
        table_path("cpu-litert", "reference-mobile", "models")).read()}
    groups = truth_groups(df, min_rows=args.min_rows)
    add_features(groups, table, SCHEMES, e2e)
    res = {k: evaluate_group(groups, k, schemes=SCHEMES, draws=args.draws, seed=args.seed)
           for k in groups}
    methods = [CHOSEN, f"{CHOSEN}[factors]", *[f"{CHOSEN}[{s}]" for s in SCHEMES[1:]], *BASELINES]
    cpu32 = [k for k in groups if groups[k].dtype == "fp32"]
    select = {m: float(np.median([res[k][m]["k5_mape"] for k in cpu32 if m in res[k]
                                  and np.isfinite(res[k][m]["k5_mape"])])) for m in methods}
    chosen = min(select, key=select.get)
    floor = source_floor(df)
    rows = []
    for k, g in groups.items():
        r = res[k]
        base = min((r[b]["loo_mape"], b) for b in BASELINES if b in r)
        c = r[CHOSEN]
        rows.append([k, g.n, g.weak, fmt(c["loo_mape"], "pct"), fmt(c["k3_mape"], "pct"),
                     fmt(c["k5_mape"], "pct"), fmt(c["loo_max"], "pct"), f"{c['spearman']:.3f}",
                     f"{base[1]} {fmt(base[0], 'pct')}", f"{c['loo_mape'] / base[0]:.2f}",
                     "yes" if g.n >= TARGET_ROWS else "no"])
    md = ["# Published phone timings from this host's operator times\n",
          f"Method chosen by the median K=5 MAPE over {len(cpu32)} fp32 CPU groups, each scored "
          f"with a prior learned on other devices only: **{chosen}**.\n",
          md_table(["method", "median K=5 MAPE (fp32 groups)"],
                   [[m, fmt(v, "pct")] for m, v in sorted(select.items(), key=lambda x: x[1])]),
          "\n## Cross-device predictor per group\n",
          md_table(["group", "n", "weak", "LOO MAPE", "K=3", "K=5", "LOO max", "Spearman",
                    "best baseline (LOO)", "ratio", "counts"], rows),
          "\n## Baselines per group (LOO MAPE / K=5 MAPE)\n",
          md_table(["group", *BASELINES],
                   [[k, *[f"{fmt(res[k][b]['loo_mape'], 'pct')} / {fmt(res[k][b]['k5_mape'], 'pct')}"
                          if b in res[k] else "-" for b in BASELINES]] for k in groups]),
          "\n## Two sources, one network and device\n",
          md_table(["network", "device", "dtype", "sources", "difference"],
                   [[f["network"], f["device"], f["dtype"], f["sources"], fmt(f["rel_diff"], "pct")]
                    for f in sorted(floor, key=lambda f: -f["rel_diff"])])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(groups, res, out / "published_phones.png")
    md.append("\n![LOO predictions](published_phones.png)\n")
    shipped = {}
    if args.ship:
        for dtype in ("fp32", "int8"):
            pr, prov = truth_prior(groups, dtype, scheme="kernel", table=table)
            path = SHIPPED_PRIORS / f"cpu-litert_phones-{dtype}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**pr.to_dict(), "provenance": prov}, indent=1) + "\n")
            shipped[dtype] = str(path.relative_to(Path(__file__).resolve().parents[1]))
    results = {"chosen": chosen, "selection_k5": select, "groups": {
        k: {"n": g.n, "weak": g.weak, "names": g.names, "published_ms": g.y.tolist(), "methods": res[k]}
        for k, g in groups.items()}, "source_floor": floor, "shipped_priors": shipped}
    write_results("published_phones", results, "\n".join(md), out, seeds=args.seed,
                  config={"min_rows": args.min_rows, "draws": args.draws, "schemes": SCHEMES},
                  started=started)


if __name__ == "__main__":
    main()
