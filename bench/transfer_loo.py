"""Leave one device out: a new device from K timings, over the HELP devices and the Accel-NASBench accelerators.

For each target device of a group (HELP FBNet: 8 devices, space ``fbnet``;
Accel-NASBench: 4 accelerators, space ``anb``), the other devices of the group are
the sources: their shipped predict-only predictors (``bench/zoo_predictors.py``,
fitted on those devices' own rows only). K target timings are drawn (K = 5, 10, 20,
50, 100; ``--draws`` draws, medians reported) and every method is scored on all the
target's remaining rows:

- ``multi-source``: :class:`~surrogate.predict.multisource.MultiSourceTransfer`
  (sources combined and a residual, chosen by exact leave-one-out on the K);
- ``multi-source (suggested K)``: the same, on the K networks
  :func:`~surrogate.predict.suggest.suggest_timings` picks (D-optimal, from a random
  half of the rows per draw) instead of K random ones;
- ``best single calibrated``: ``a log s + b`` from each single source, the best of them
  on the scored rows (an oracle choice of source);
- ``old FewShotTransfer``: :class:`~surrogate.predict.transfer.FewShotTransfer`
  (calibration plus its ridge residual from K = 20; its boosted-tree residual, tried
  from K = 100 by cross-validation, is left out to keep the run short) from that same
  best source;
- ``scratch ridge``: a ridge :class:`LatencyModel` fitted on the K rows alone;
- ``full-data additive``: :class:`~surrogate.predict.baselines.Additive` on a random
  80% of the target's rows (about 4,000), scored on the other 20% (one split per draw).

HELP's published FBNet-space 10-shot Spearman (raspi4 0.887, FPGA 0.892, ASIC 0.943)
is printed beside the table where the device is in this data (raspi4).

Writes ``bench/results/transfer_loo.json`` and ``.md``. Run:
``taskset -c 0 python bench/transfer_loo.py`` (``--quick``: 2 targets, K 5 and 20, 1 draw).
"""
from __future__ import annotations

import datetime as dt
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_parser, fmt, limit_threads, md_table, median_metrics, write_results  # noqa: E402

from surrogate.predict.baselines import Additive  # noqa: E402
from surrogate.predict.estimators import LatencyModel  # noqa: E402
from surrogate.predict.fewshot import draw_rows  # noqa: E402
from surrogate.predict.metrics import latency_metrics  # noqa: E402
from surrogate.predict.multisource import MultiSourceTransfer  # noqa: E402
from surrogate.predict.suggest import suggest_timings  # noqa: E402
from surrogate.predict.transfer import FewShotTransfer  # noqa: E402
from surrogate.predict.zoo import PUBLISHED, fit_published, load_published  # noqa: E402

NAME = "transfer_loo"
KS = (5, 10, 20, 50, 100)
GROUPS = {"help_fbnet": ("pixel2", "samsung_a50", "pixel3", "raspi4", "gold_6226", "2080ti_1",
                         "2080ti_32", "titanx_1"),
          "accel_nasbench": ("a100", "3090", "tpuv2", "tpuv3")}
HELP_10_SHOT = {"raspi4": 0.887, "fpga": 0.892, "asic": 0.943}
OURS, SUGG, SINGLE, OLD, SCRATCH, FULL = ("multi-source", "multi-source (suggested K)",
                                          "best single calibrated", "old FewShotTransfer",
                                          "scratch ridge", "full-data additive")
METHODS = (OURS, SUGG, SINGLE, OLD, SCRATCH, FULL)


def source_predictions(names, ds, log) -> dict[str, np.ndarray]:
    """Each device's predictor on every row: the shipped one, else fitted here on its rows."""
    from surrogate.predict.workflow import shipped_predictor

    out = {}
    for n in names:
        try:
            est = shipped_predictor(n, PUBLISHED[n].space)
            how = "shipped"
        except ValueError:
            est, _ = fit_published(n, ds=ds)
            how = "fitted here"
        out[n] = np.maximum(est.predict(ds.canonical), 1e-3)
        log(f"source {n}: {how} {type(est).__name__}")
    return out


class RowLookup:
    """A source's precomputed predictions, looked up by index vector (vectorised)."""

    def __init__(self, X: np.ndarray, pred: np.ndarray):
        self.radix = np.cumprod([1] + [int(X.max()) + 1] * (X.shape[1] - 1)).astype(np.int64)
        keys = X @ self.radix
        order = np.argsort(keys)
        self.keys, self.pred = keys[order], np.asarray(pred)[order]

    def __call__(self, X) -> np.ndarray:
        k = np.asarray(X) @ self.radix
        pos = np.searchsorted(self.keys, k)
        if (pos >= len(self.keys)).any() or (self.keys[np.minimum(pos, len(self.keys) - 1)] != k).any():
            raise KeyError("RowLookup: an index vector not in the table")
        return self.pred[pos]

    predict = __call__


def calibrated(X, y, pick, te, src) -> dict:
    """``a log s + b`` fitted on the K rows (FewShotTransfer's robust calibration), scored."""
    ls = np.log(src(X))
    a, b = FewShotTransfer()._calibrate(ls[pick], np.log(y[pick]))
    return latency_metrics(y[te], np.exp(a * ls[te] + b))


def one_draw(X, y, space, srcs, k: int, r: int, seed: int) -> dict[str, dict]:
    """Every method's metrics for draw ``r`` of ``k`` target timings."""
    n = len(y)
    pick = draw_rows(np.arange(n), k, r, seed)
    te = np.setdiff1d(np.arange(n), pick)
    out: dict[str, dict] = {}
    m = MultiSourceTransfer(space, sources=srcs).fit(X[pick], y[pick])
    out[OURS] = {**latency_metrics(y[te], m.predict(X[te])), "choice": m.summary()}
    rng = np.random.default_rng(10_000 * seed + 31 * k + r)
    half = np.sort(rng.choice(n, n // 2, replace=False))
    spick = half[suggest_timings(space, k, pool=X[half], sources=srcs)]
    ste = np.setdiff1d(np.arange(n), spick)
    ms = MultiSourceTransfer(space, sources=srcs).fit(X[spick], y[spick])
    out[SUGG] = latency_metrics(y[ste], ms.predict(X[ste]))
    single = {n: calibrated(X, y, pick, te, s) for n, s in srcs.items()}
    best = max(single, key=lambda n: single[n]["spearman"])
    out[SINGLE] = single[best]
    fst = FewShotTransfer(space, source=srcs[best], residual="ridge").fit(X[pick], y[pick])
    out[OLD] = latency_metrics(y[te], fst.predict(X[te]))
    sc = LatencyModel(space, model="ridge", parts=("encoding", "counts")).fit(X[pick], y[pick])
    out[SCRATCH] = latency_metrics(y[te], np.maximum(sc.predict(X[te]), 1e-3))
    perm = np.random.default_rng(seed * 100 + r).permutation(n)
    tr80, te20 = perm[: int(0.8 * n)], perm[int(0.8 * n):]
    out[FULL] = latency_metrics(y[te20], Additive(space).fit(X[tr80], y[tr80]).predict(X[te20]))
    return out


def run_group(group: str, targets, ks, draws, seed, data, log) -> dict:
    ds = load_published(group, data)
    X, space = ds.canonical, PUBLISHED[GROUPS[group][0]].space
    preds = source_predictions(GROUPS[group], ds, log)
    res: dict = {}
    for tgt in targets:
        y = ds.latency_ms(tgt)
        srcs = {d: RowLookup(X, preds[d]) for d in GROUPS[group] if d != tgt}
        res[tgt] = {}
        for k in ks:
            t0 = time.perf_counter()
            runs: dict[str, list] = {m: [] for m in METHODS}
            choices = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for r in range(draws):
                    d = one_draw(X, y, space, srcs, int(k), r, seed)
                    choices.append(d[OURS].pop("choice"))
                    for mname, v in d.items():
                        runs[mname].append(v)
            res[tgt][str(k)] = {m: median_metrics(v) for m, v in runs.items()}
            res[tgt][str(k)]["choices"] = choices
            c = res[tgt][str(k)]
            log(f"{tgt} K={k}: ours {c[OURS]['spearman']:.3f} suggested {c[SUGG]['spearman']:.3f} "
                f"single {c[SINGLE]['spearman']:.3f} old {c[OLD]['spearman']:.3f} full-additive "
                f"{c[FULL]['spearman']:.3f} ({time.perf_counter() - t0:.0f}s)")
    return res


def targets_check(res: dict, ks) -> dict:
    """Each target of the issue: met or missed, with the figures behind it."""
    out: dict = {}
    k20, k100 = "20", str(max(k for k in ks if k <= 100))
    for grp in res.values():
        for tgt, cells in grp.items():
            row: dict = {}
            if k20 in cells:
                a, b = cells[k20][OURS]["spearman"], cells[k20][SINGLE]["spearman"]
                row["k20_beats_best_single"] = {"met": a > b, "ours": a, "best_single": b}
            if k20 in cells and k100 in cells and k100 != k20:
                a, b = cells[k100][OURS]["spearman"], cells[k20][OURS]["spearman"]
                row["k100_beats_k20"] = {"met": a > b, "k100": a, "k20": b}
            full = max(cells[str(k)][FULL]["spearman"] for k in ks if str(k) in cells)
            best = max(cells[str(k)][OURS]["spearman"] for k in ks if str(k) in cells)
            row["reaches_full_additive"] = {"met": best >= full, "best_ours": best,
                                            "full_additive": full, "gap": full - best}
            if tgt == "raspi4" and k20 in cells:
                v = cells[k20][OURS]["spearman"]
                row["raspi4_k20_ge_0.95"] = {"met": v >= 0.95, "spearman": v}
            if tgt in ("gold_6226", "2080ti_32") and k100 in cells:
                v = cells[k100][OURS]["spearman"]
                row[f"{tgt}_k100_ge_0.90"] = {"met": v >= 0.90, "spearman": v}
            out[tgt] = row
    return out


def markdown(res: dict, checks: dict, ks, draws: int) -> str:
    L = ["# A new device from K timings: leave one device out", "",
         f"Median over {draws} draws of the K target timings; every method scored on all the "
         "target's remaining rows (full-data additive: fitted on 80% of the target's rows, "
         "scored on the other 20%). Sources: the group's other devices' shipped predict-only "
         "predictors. 'best single calibrated' takes the best source on the scored rows (an "
         "oracle choice) and 'old FewShotTransfer' uses that source.", ""]
    for metric, kind, title in (("spearman", "", "Spearman"), ("kendall_tau", "", "Kendall"),
                                ("mape", "pct", "MAPE"), ("within_10pct", "pct", "within ±10%")):
        L += [f"## {title}", ""]
        rows = []
        for grp in res.values():
            for tgt, cells in grp.items():
                for mname in METHODS:
                    rows.append([tgt if mname == OURS else "", mname]
                                + [fmt(cells[str(k)][mname][metric], kind) if str(k) in cells
                                   else "-" for k in ks])
        L += [md_table(["target", "method"] + [f"K={k}" for k in ks], rows), ""]
    L += ["## Targets", "", f"HELP's published FBNet 10-shot Spearman: raspi4 "
          f"{HELP_10_SHOT['raspi4']} (FPGA {HELP_10_SHOT['fpga']}, ASIC {HELP_10_SHOT['asic']} are "
          "not in this data).", ""]
    rows = []
    for tgt, row in checks.items():
        for name, v in row.items():
            figs = ", ".join(f"{k} {fmt(x)}" for k, x in v.items() if k != "met")
            rows.append([tgt, name, "met" if v["met"] else "**missed**", figs])
    L += [md_table(["target", "check", "result", "figures (Spearman)"], rows), ""]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=5, help="draws of the K timings (medians)")
    a = p.parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    log = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
    if a.quick:
        ks, draws = (5, 20), 1
        plan = {"help_fbnet": ("raspi4",), "accel_nasbench": ("tpuv3",)}
    else:
        ks, draws, plan = KS, a.draws, GROUPS
    res = {g: run_group(g, plan[g], ks, draws, a.seed, a.data, log) for g in plan}
    checks = targets_check(res, ks)
    results = {"groups": res, "targets": checks, "help_10_shot_spearman": HELP_10_SHOT}
    write_results(NAME, results, markdown(res, checks, ks, draws), a.out,
                  seeds=[a.seed], started=started,
                  config={"ks": ks, "draws": draws, "quick": a.quick, "plan": plan})
    return results


if __name__ == "__main__":
    main()
