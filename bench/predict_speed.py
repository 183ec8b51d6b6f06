"""Prediction speed: predictions per second for 100k architectures, batched, and fit time.

For each space (``anb``, ``mnasnet``): an :class:`OpTable` over the space's
``operator_configs()`` with each operator's MAdds (millions, + 0.01) as its "latency"
(speed does not depend on the values); 100k index vectors from
``space.sample_indices`` (drawn before any timing) and 5,000 training rows whose
latencies are that table sum times log-normal noise (sigma 0.05).

Timed (median of ``--repeats`` runs, one call on all 100k index vectors, after one
warm-up call): :class:`TableSum`, :class:`FlopsLinear`, and :class:`LatencyModel`
(``ridge``, ``mlp``, ``xgb``; default features ``encoding + counts + table``), with
the featurisation and regressor shares. Fit time: one fit on the 5,000 rows.
Targets: >= 100k/s for TableSum and the MLP, >= 20k/s for gradient
boosting. Threads: torch, BLAS and XGBoost are held to one thread; run it pinned
(``taskset -c 0``) so the figures are per core; the machine info in the JSON says
what the affinity was.

Writes ``bench/results/predict_speed.json`` and ``.md``.
Run: ``taskset -c 0 python bench/predict_speed.py``.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_parser, fmt, limit_threads, md_table, write_results  # noqa: E402

from space import get_space  # noqa: E402
from surrogate.predict.estimators import FlopsLinear, LatencyModel, TableSum  # noqa: E402
from surrogate.predict.oplevel import op_cost  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402

NAME = "predict_speed"
SPACES = ("anb", "mnasnet")
TARGETS = {"table-sum": 100_000, "mlp": 100_000, "xgb": 20_000}


def madds_table(space) -> OpTable:
    """An operator table whose entries are each operator's MAdds in millions (+ 0.01)."""
    return OpTable({lc.key(): op_cost(lc)[0] / 1e6 + 0.01 for lc in space.operator_configs()},
                   profile="speed-bench", space=space.name)


def timed(f: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``f`` over ``repeats`` calls (after one warm-up call)."""
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), ts


def bench_space(name: str, n: int, fit_rows: int, repeats: int, seed: int, quick: bool, log) -> dict:
    sp = get_space(name)
    t0 = time.perf_counter()
    table = madds_table(sp)
    rng = np.random.default_rng(seed)
    idx = sp.sample_indices(rng, n)
    train = sp.sample_indices(rng, fit_rows)
    log(f"{name}: table of {len(table)} ops, {n} + {fit_rows} index vectors "
        f"({time.perf_counter() - t0:.0f}s)")
    ts = TableSum(name, table)
    t = time.perf_counter()
    ts.fit()  # compiles the space
    compile_s = time.perf_counter() - t
    y = ts.predict(train) * np.exp(0.05 * rng.standard_normal(len(train)))
    quick_params = {"mlp": {"epochs": 3}, "xgb": {"n_estimators": 30}}
    models = {"table-sum": lambda: TableSum(name, table),
              "flops-linear": lambda: FlopsLinear(name),
              "ridge": lambda: LatencyModel(name, table, model="ridge"),
              "mlp": lambda: LatencyModel(name, table, model="mlp",
                                          model_params=quick_params["mlp"] if quick else None),
              "xgb": lambda: LatencyModel(name, table, model="xgb",
                                          model_params=quick_params["xgb"] if quick else None)}
    out: dict = {"n_predict": n, "fit_rows": fit_rows, "n_ops": len(table),
                 "compile_s": compile_s, "models": {}}
    for mname, make in models.items():
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            est.fit() if mname == "table-sum" else est.fit(train, y)
            fit_s = time.perf_counter() - t
        med, all_t = timed(lambda: est.predict(idx), repeats)
        row = {"predictions_per_s": n / med, "best_per_s": n / min(all_t),
               "predict_s_median": med, "predict_s_all": all_t,
               "fit_s": fit_s, "target_per_s": TARGETS.get(mname)}
        if isinstance(est, LatencyModel):
            feat_s, _ = timed(lambda: est.features_.transform(idx), repeats)
            F = est.features_.transform(idx)
            reg_s, _ = timed(lambda: est.regressor_.predict(F), repeats)
            row.update({"featurise_s_median": feat_s, "regressor_s_median": reg_s,
                        "n_features": int(F.shape[1]), "parts": list(est.features_.parts)})
        if row["target_per_s"]:
            row["meets_target"] = bool(row["predictions_per_s"] >= row["target_per_s"])
        out["models"][mname] = row
        log(f"{name} {mname}: {row['predictions_per_s']:,.0f}/s, fit {fit_s:.1f}s")
    return out


def markdown(res: dict, n: int, repeats: int) -> str:
    L = ["# Prediction speed (index arrays, one batched call)", "",
         f"{n:,} architectures per call, median of {repeats} calls; fit time: one fit on the "
         "training rows. Target: >= 100k/s for TableSum and the MLP, >= 20k/s for gradient "
         "boosting (XGBoost). One core (the process is pinned; torch, BLAS and XGBoost use one "
         "thread); the machine is shared, so the best call shows what an idle core gives.", ""]
    rows = []
    for sp, r in res.items():
        for m, v in r["models"].items():
            tgt = v.get("target_per_s")
            ok = "-" if not tgt else ("yes" if v["meets_target"] else "**no**")
            rows.append([sp, m, fmt(v["predictions_per_s"], "rate"), fmt(v["best_per_s"], "rate"),
                         fmt(float(tgt), "rate") if tgt else "-",
                         ok, fmt(v.get("featurise_s_median"), "s"),
                         fmt(v.get("regressor_s_median"), "s"), fmt(v["fit_s"], "s")])
    L.append(md_table(["space", "predictor", "predictions/s (median)", "best call /s", "target /s", "met",
                       "featurise s", "regressor s", f"fit s ({next(iter(res.values()))['fit_rows']} rows)"],
                      rows))
    L += ["", "Compile time of the space's lookup tensors (first fit): "
          + ", ".join(f"{sp} {r['compile_s']:.2f}s" for sp, r in res.items())]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="architectures per predict call")
    p.add_argument("--fit-rows", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--spaces", nargs="+", default=list(SPACES))
    a = p.parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    n, fit_rows, repeats = (a.n, a.fit_rows, a.repeats) if not a.quick else (2000, 300, 2)
    log = lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)  # noqa: E731
    res = {sp: bench_space(sp, n, fit_rows, repeats, a.seed, a.quick, log) for sp in a.spaces}
    write_results(NAME, res, markdown(res, n, repeats), a.out, seeds=[a.seed], started=started,
                  config={"n": n, "fit_rows": fit_rows, "repeats": repeats, "spaces": a.spaces,
                          "quick": a.quick, "threads": 1})
    return res


if __name__ == "__main__":
    main()
