"""Accel-NASBench accelerators: ms per image (1 / throughput) from K samples.

Data: ``accel_nasbench/anb_results.csv`` (throughput in images/s on A100, RTX 3090,
TPUv2, TPUv3). Rows lacking any of the four throughputs are dropped, and repeated
architectures keep their first row, so no network sits on both sides of a split.

Fixed split (``--seed``): 1,000 test rows, a disjoint *source* split of 2,000 rows
and the remaining rows as the pool the K target samples are drawn from.
For each target accelerator and K in {5, 10, 20, 50, 100, 500} (``--repeats`` draws
of the K rows, medians):

- ``scratch ridge`` / ``scratch xgb``: :class:`LatencyModel` on ``encoding + counts``
  fitted on the K rows only; ``scratch flops-linear``: :class:`FlopsLinear` (MACs);
- ``from <acc>``: :class:`FewShotTransfer` from another accelerator's predictor,
  fitted on that accelerator's timings of the source split (never the test rows,
  never the target's timings). The source model (``ridge``, ``xgb`` or ``xgb-d3``)
  is the one with the lowest MAPE on a validation fifth of the source split.

The reference row ``own 2,000`` is the target's own model fitted on the 2,000 source
rows. The benchmark's repeatability (median std / mean of its throughput runs) is
reported as the noise floor.

Writes ``bench/results/anb_accelerators.json`` and ``.md``.
Run: ``taskset -c 0 python bench/anb_accelerators.py``.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_parser, curve_medians, fmt, limit_threads, md_table, write_results  # noqa: E402

from surrogate.datasets import load_anb as load_anb_dataset  # noqa: E402
from surrogate.predict.estimators import FlopsLinear, LatencyModel  # noqa: E402
from surrogate.predict.fewshot import kshot_curve  # noqa: E402
from surrogate.predict.metrics import latency_metrics  # noqa: E402
from surrogate.predict.selection import select_and_fit  # noqa: E402

NAME = "anb_accelerators"
ACCS = ("a100", "3090", "tpuv2", "tpuv3")
KS = (5, 10, 20, 50, 100, 500)
EC = ("encoding", "counts")
XGB_D3 = {"max_depth": 3, "n_estimators": 1500, "learning_rate": 0.05}


def load_anb(data) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """(canonical index vectors, {acc: ms per image}, {acc: relative std}, info)."""
    ds = load_anb_dataset(data, accelerators=ACCS)
    return (ds.canonical, {a: ds.latency_ms(a) for a in ACCS},
            {a: ds.frame[f"{a}_rel_std"].to_numpy() for a in ACCS}, ds.info)


def fixed_split(n: int, seed: int, n_test: int, n_source: int):
    """(test, source, pool) disjoint row indices."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test], perm[n_test: n_test + n_source], perm[n_test + n_source:]


def source_candidates(quick: bool) -> dict:
    """Source models by name -> factory(seed) (the seed is not used: as fitted before)."""
    xp = {"n_estimators": 40} if quick else {}
    return {
        "ridge": lambda s: LatencyModel("anb", model="ridge", parts=EC),
        "xgb": lambda s: LatencyModel("anb", model="xgb", parts=EC, model_params=xp or None),
        "xgb-d3": lambda s: LatencyModel("anb", model="xgb", parts=EC, model_params={**XGB_D3, **xp}),
    }


def run(idx, ys, *, seed: int, ks, repeats: int, n_test: int, n_source: int, quick: bool,
        log) -> dict:
    """Source models on the source split, then each target's K-shot curve on the test rows."""
    te, src, pool = fixed_split(len(idx), seed, n_test, n_source)
    sources, own = {}, {}
    for a in ACCS:
        t0 = time.perf_counter()
        sel = select_and_fit(source_candidates(quick), idx[src], ys[a][src], seed=seed,
                             split_seed=20_000 + seed, refit="chosen")
        sources[a] = sel.best
        own[a] = {"model": sel.chosen,
                  "validation_mape": {n: v["mape"] for n, v in sel.validation.items()},
                  "test": latency_metrics(ys[a][te], sel.best.predict(idx[te]))}
        log(f"{a}: source model {sel.chosen}, own test MAPE {own[a]['test']['mape']:.4f} "
            f"({time.perf_counter() - t0:.0f}s)")
    xp = {"n_estimators": 40} if quick else None
    scratch = {"scratch ridge": lambda: LatencyModel("anb", model="ridge", parts=EC),
               "scratch xgb": lambda: LatencyModel("anb", model="xgb", parts=EC, model_params=xp),
               "scratch flops-linear": lambda: FlopsLinear("anb")}
    out: dict = {}
    for tgt in ACCS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            curve = kshot_curve(idx, ys[tgt], space="anb", ks=ks, draws=repeats, seed=seed,
                                sources={s: m for s, m in sources.items() if s != tgt},
                                pool=pool, test=te, scratch=scratch,
                                log=lambda m, t=tgt: log(f"{t} {m}"))
        out[tgt] = curve_medians(curve)
    return {"per_target": out, "own_source_split_model": own,
            "split": {"test": len(te), "source": len(src), "pool": len(pool)}}


def markdown(res: dict, ks, rel: dict, info: dict, repeats: int) -> str:
    sp = res["split"]
    L = ["# Accel-NASBench accelerators: ms per image from K samples", "",
         f"{info['rows_used']} rows ({info['rows_missing_a_throughput']} lacking a throughput and "
         f"{info['repeated_architectures_dropped']} repeated architectures dropped); test "
         f"{sp['test']} rows, source split {sp['source']}, pool {sp['pool']}. Medians over "
         f"{repeats} draws of the K rows. `from X`: FewShotTransfer from accelerator X's model "
         f"(fitted on the source split); `own {sp['source']}`: the target's model on the source "
         "split (a reference, not few-shot).", "",
         "Repeatability of the benchmark's throughput (median std / mean): "
         + ", ".join(f"{a} {100 * float(np.nanmedian(rel[a])):.2f}%" for a in ACCS)
         + " (the floor for MAPE on a single measurement).", ""]
    for tgt, r in res["per_target"].items():
        names = list(r[str(ks[0])].keys())
        own = res["own_source_split_model"][tgt]
        for metric, kind, title in (("spearman", "", "Spearman"), ("kendall_tau", "", "Kendall"),
                                    ("mape", "pct", "MAPE"), ("within_10pct", "pct", "within ±10%")):
            rows = [[n] + [fmt(r[str(k)][n][metric], kind) for k in ks] for n in names]
            L += [f"### {tgt}: {title} (own {sp['source']}, {own['model']}: "
                  f"{fmt(own['test'][metric], kind)})", "",
                  md_table(["predictor \\ K"] + [str(k) for k in ks], rows), ""]
    # a compact summary: best transfer source vs scratch xgb per target and K
    rows = []
    for tgt, r in res["per_target"].items():
        for k in ks:
            cell = r[str(k)]
            best = min((n for n in cell if n.startswith("from")), key=lambda n: cell[n]["mape"])
            rows.append([tgt, str(k), best, fmt(cell[best]["spearman"]), fmt(cell[best]["kendall_tau"]),
                         fmt(cell[best]["mape"], "pct"), fmt(cell[best]["within_10pct"], "pct"),
                         fmt(cell["scratch xgb"]["spearman"]), fmt(cell["scratch xgb"]["mape"], "pct"),
                         fmt(cell["scratch ridge"]["mape"], "pct")])
    L += ["## Summary: best transfer source (by test MAPE, for reading only) vs scratch", "",
          md_table(["target", "K", "best source", "Spearman", "Kendall", "MAPE", "±10%",
                    "scratch xgb Spearman", "scratch xgb MAPE", "scratch ridge MAPE"], rows)]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="draws of the K rows (medians)")
    a = p.parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    idx, ys, rel, info = load_anb(a.data)
    if a.quick:
        ks, repeats, n_test, n_source = (5, 20), 1, 200, 300
    else:
        ks, repeats, n_test, n_source = KS, a.repeats, 1000, 2000
    log = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
    res = run(idx, ys, seed=a.seed, ks=ks, repeats=repeats, n_test=n_test,
              n_source=n_source, quick=a.quick, log=log)
    res["data"] = info
    res["repeatability_median_rel_std"] = {k: float(np.nanmedian(v)) for k, v in rel.items()}
    md = markdown(res, ks, rel, info, repeats)
    write_results(NAME, res, md, a.out, seeds={"split": a.seed, "draws": list(range(repeats))},
                  started=started, config={"ks": ks, "repeats": repeats, "n_test": n_test,
                                           "n_source": n_source, "quick": a.quick,
                                           "xgb_d3": XGB_D3})
    return res


if __name__ == "__main__":
    main()
