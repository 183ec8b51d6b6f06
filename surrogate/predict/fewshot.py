"""Few-shot evaluation curves: predictors for a target device from K of its timings.

:func:`kshot_curve` draws K target timings ``draws`` times for each K, fits a
:class:`~surrogate.predict.transfer.FewShotTransfer` from each source predictor and
the from-scratch baselines on them, and scores every fit on the rows not drawn (or
on a fixed ``test`` set). One row per (K, draw, method) in a pandas DataFrame;
:func:`curve_summary` takes the median over draws.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .estimators import FlopsLinear, LatencyModel
from .metrics import latency_metrics
from .regressors import _check_y
from .transfer import FewShotTransfer

EC = ("encoding", "counts")


class Precomputed:
    """A source 'predictor' of precomputed predictions, looked up by index vector.

    Fit a source once on all rows, then hand ``Precomputed(X, model.predict(X))`` to
    :func:`kshot_curve`: every draw reuses the predictions instead of recomputing them.
    """

    def __init__(self, X: np.ndarray, pred: np.ndarray):
        X = np.asarray(X)
        if X.ndim != 2 or len(X) != len(pred):
            raise ValueError(f"Precomputed: expected an (n, d) index array and n predictions, "
                             f"got shapes {X.shape} and {np.shape(pred)}")
        self.table = {tuple(r): float(p) for r, p in zip(X.tolist(), pred)}

    def __call__(self, X) -> np.ndarray:
        try:
            return np.array([self.table[tuple(r)] for r in np.asarray(X).tolist()])
        except KeyError as exc:
            raise KeyError(f"Precomputed: no prediction for index vector {exc.args[0]}") from None

    predict = __call__


def default_scratch(space: str) -> dict[str, Callable[[], Any]]:
    """From-scratch baselines on the K rows: a ridge :class:`LatencyModel` and :class:`FlopsLinear`."""
    return {"scratch ridge": lambda: LatencyModel(space, model="ridge", parts=EC),
            "scratch flops-linear": lambda: FlopsLinear(space)}


def draw_rows(pool: np.ndarray, k: int, draw: int, seed: int) -> np.ndarray:
    """The ``draw``-th random choice of ``k`` rows of ``pool`` (reproducible per (seed, k, draw))."""
    rng = np.random.default_rng(1000 * seed + 7919 * k + draw)
    return rng.choice(pool, size=min(k, len(pool)), replace=False)


def kshot_curve(X: np.ndarray, y, *, space: str, sources: Mapping[str, Any] | None = None,
                ks: Sequence[int] = (5, 10, 20, 50, 100), draws: int = 5, seed: int = 0,
                pool: np.ndarray | None = None, test: np.ndarray | None = None,
                scratch: Mapping[str, Callable[[], Any]] | None = None,
                method: Callable[[Any], Any] | None = None, floor: float = 1e-6,
                log: Callable[[str], None] | None = None):
    """The K-shot learning curve of a target device (a pandas DataFrame).

    ``X``: index vectors of the target's networks (``space``), ``y``: their latencies
    (ms). ``sources``: name -> fitted predictor or callable ``X -> ms`` of another
    device (method ``from <name>``). For each K in ``ks`` and each of ``draws`` draws,
    K rows are drawn from ``pool`` (default: all rows) and every method is scored on
    ``test`` (default: all rows not drawn). ``scratch``: name -> factory of baselines
    fitted on the K rows only (default :func:`default_scratch`; ``{}`` for none).
    ``method``: source -> unfitted transfer estimator (default ``FewShotTransfer``).
    Predictions are floored at ``floor`` ms. Columns: ``k``, ``draw``, ``method``, then
    :func:`~surrogate.predict.metrics.latency_metrics` (``n`` is the scored rows).
    """
    from ..frames import require_pandas

    pd = require_pandas()
    X = np.asarray(X)
    y = _check_y(y, len(X))
    if draws < 1:
        raise ValueError(f"draws: expected a positive count, got {draws}")
    if not ks or any(int(k) < 2 for k in ks):
        raise ValueError(f"ks: expected sample counts of at least 2, got {list(ks)}")
    pool = np.arange(len(y)) if pool is None else np.asarray(pool, dtype=np.int64)
    if len(pool) < 2:
        raise ValueError(f"pool: expected at least 2 rows to draw from, got {len(pool)}")
    sources = dict(sources or {})
    scratch = default_scratch(space) if scratch is None else dict(scratch)
    if not sources and not scratch:
        raise ValueError("nothing to score: give sources or scratch baselines")
    make = method or (lambda src: FewShotTransfer(space, source=src))
    rows = []
    for k in ks:
        for r in range(draws):
            pick = draw_rows(pool, int(k), r, seed)
            te = np.setdiff1d(np.arange(len(y)), pick) if test is None else np.asarray(test)
            fits = [(f"from {n}", lambda s=s: make(s)) for n, s in sources.items()]
            fits += list(scratch.items())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name, factory in fits:
                    p = np.maximum(factory().fit(X[pick], y[pick]).predict(X[te]), floor)
                    rows.append({"k": int(k), "draw": r, "method": name,
                                 **latency_metrics(y[te], p)})
        if log:
            last = [row for row in rows if row["k"] == int(k)]
            best = min(last, key=lambda row: row["mape"])
            log(f"K={k}: best {best['method']} MAPE {best['mape']:.4f} "
                f"Spearman {best['spearman']:.3f} (draw {best['draw']})")
    return pd.DataFrame(rows)


def curve_summary(curve, stat: str = "median"):
    """Per (K, method) the ``stat`` (``median`` or ``mean``) of each metric over draws."""
    if stat not in ("median", "mean"):
        raise ValueError(f"stat: expected 'median' or 'mean', got {stat!r}")
    g = curve.drop(columns=["draw"]).groupby(["k", "method"], sort=False)
    out = g.median() if stat == "median" else g.mean()
    out["draws"] = g.size()
    if "n" in out and stat == "median":
        out["n"] = out["n"].round().astype("int64")
    return out.reset_index()
