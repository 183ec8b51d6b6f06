"""Model selection: pick a predictor by a validation split or by K-fold cross-validation.

Candidates are a mapping ``name -> factory(seed) -> unfitted estimator``
(:func:`candidates` gives the project's usual set for a space). :func:`select_and_fit`
chooses by validation MAPE and refits on all rows; :func:`cv_mape` scores one factory
by K-fold cross-validation; :class:`ValidationSelector` is the same choice as a
scikit-learn estimator. Given the candidates' ``space``, :func:`select_and_fit` and
:func:`cv_mape` turn architectures into index vectors once, not in every fit and
predict (a string costs a search of the space: about 60 ms in ``mnasnet``).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .estimators import LatencyModel
from .features import as_indices
from .metrics import latency_metrics
from .regressors import _check_y

Factory = Callable[[int], Any]
EC = ("encoding", "counts")
#: XGBoost with an absolute-error objective (robust to slow outlier runs)
XGB_L1 = {"objective": "reg:absoluteerror", "max_depth": 2, "n_estimators": 1500,
          "learning_rate": 0.03}


def huber_linear(space: str, parts: Sequence[str] = EC, epsilon: float = 1.1):
    """ArchFeatures -> scaler -> Huber regression on log latency (a robust linear model)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.linear_model import HuberRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .features import ArchFeatures

    reg = TransformedTargetRegressor(HuberRegressor(epsilon=epsilon, alpha=1e-3, max_iter=3000),
                                     func=np.log, inverse_func=np.exp, check_inverse=False)
    return make_pipeline(ArchFeatures(space, parts=tuple(parts)), StandardScaler(), reg)


def candidates(space: str, *, quick: bool = False, with_mlp: bool = True,
               parts: Sequence[str] = EC) -> dict[str, Factory]:
    """The usual candidates by name: ``ridge``, ``xgb``, ``xgb-l1``, ``huber-linear``,
    ``additive`` (:class:`~surrogate.predict.baselines.Additive`: per-(position, choice)
    costs in linear ms, which wins on near-additive devices) and ``mlp``.

    ``quick``: tiny tree and epoch counts (smoke tests). ``parts``: feature parts.
    """
    from .baselines import Additive

    parts = tuple(parts)
    xp = {"n_estimators": 40} if quick else {}
    c: dict[str, Factory] = {
        "ridge": lambda s: LatencyModel(space, model="ridge", parts=parts, random_state=s),
        "xgb": lambda s: LatencyModel(space, model="xgb", parts=parts, model_params=xp or None,
                                      random_state=s),
        "xgb-l1": lambda s: LatencyModel(space, model="xgb", parts=parts,
                                         model_params={**XGB_L1, **xp}, random_state=s),
        "huber-linear": lambda s: huber_linear(space, parts),
        "additive": lambda s: Additive(space),
    }
    if with_mlp:
        mp = {"epochs": 5} if quick else None
        c["mlp"] = lambda s: LatencyModel(space, model="mlp", parts=parts, model_params=mp,
                                          random_state=s)
    return c


def _take(X, idx: np.ndarray):
    return X[idx] if isinstance(X, np.ndarray) else [X[int(i)] for i in idx]


def _indices(X, space):
    """``X`` as index vectors of ``space`` (a name or a SearchSpace); as given without one."""
    if space is None:
        return X
    from space.spaces import get_space

    return as_indices(get_space(space) if isinstance(space, str) else space, X)


def validation_split(n: int, *, val_share: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: a random ``val_share`` of ``n`` rows held out."""
    if not 0 < val_share < 1:
        raise ValueError(f"val_share: expected a fraction in (0, 1), got {val_share}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_share * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_share {val_share} of {n} rows leaves no training or validation rows")
    return perm[n_val:], perm[:n_val]


@dataclass
class Selection:
    """What :func:`select_and_fit` found: the ``chosen`` name, refitted models, and per
    candidate the validation metrics and the seconds its refit took."""

    chosen: str
    fitted: dict[str, Any]
    validation: dict[str, dict]
    fit_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def best(self):
        """The chosen model, refitted on all rows."""
        return self.fitted[self.chosen]

    def validation_frame(self):
        """Validation metrics, one row per candidate (a pandas DataFrame), best first."""
        from ..frames import require_pandas

        pd = require_pandas()
        df = pd.DataFrame.from_dict(self.validation, orient="index").rename_axis("model")
        df["chosen"] = df.index == self.chosen
        return df.sort_values("mape").reset_index()


def select_and_fit(cands: Mapping[str, Factory], X, y, *, seed: int = 0, val_share: float = 0.2,
                   split_seed: int | None = None, refit: str = "all", space=None) -> Selection:
    """Fit every candidate on a training split, pick the lowest validation MAPE, refit.

    ``split_seed``: seed of the validation split (default ``10_000 + seed``; ``seed`` is
    passed to each factory). ``refit``: ``'all'`` refits every candidate on all rows,
    ``'chosen'`` only the chosen one. ``space``: the candidates' search space (a name),
    to convert architectures to index vectors once. Warnings from the fits are silenced.
    """
    if not cands:
        raise ValueError("cands: expected at least one candidate factory")
    if refit not in ("all", "chosen"):
        raise ValueError(f"refit: expected 'all' or 'chosen', got {refit!r}")
    y = _check_y(y, len(X))
    X = _indices(X, space)
    tr, va = validation_split(len(y), val_share=val_share,
                              seed=10_000 + seed if split_seed is None else split_seed)
    val: dict[str, dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in cands.items():
            m = make(seed).fit(_take(X, tr), y[tr])
            val[name] = latency_metrics(y[va], m.predict(_take(X, va)))
        chosen = min(val, key=lambda k: val[k]["mape"])
        fitted, fit_s = {}, {}
        for name in (cands if refit == "all" else [chosen]):
            t = time.perf_counter()
            fitted[name] = cands[name](seed).fit(X, y)
            fit_s[name] = time.perf_counter() - t
    return Selection(chosen=chosen, fitted=fitted, validation=val, fit_seconds=fit_s)


def cv_mape(make: Callable[[], Any], X, y, *, folds: int = 5, seed: int = 0, space=None) -> float:
    """Mean over ``folds`` of the held-out MAPE of ``make()`` fitted on the other folds.

    ``space``: the estimator's search space (a name), to convert architectures to index
    vectors once rather than in each fold's fit and predict (the same result).
    """
    y = _check_y(y, len(X))
    if not 2 <= folds <= len(y):
        raise ValueError(f"folds: expected 2..{len(y)} (the number of rows), got {folds}")
    X = _indices(X, space)
    order = np.random.default_rng(seed).permutation(len(y))
    errs = []
    for f in range(folds):
        te = order[f::folds]
        tr = np.setdiff1d(order, te)
        p = make().fit(_take(X, tr), y[tr]).predict(_take(X, te))
        errs.append(np.mean(np.abs(p / y[te] - 1)))
    return float(np.mean(errs))


class ValidationSelector(RegressorMixin, BaseEstimator):
    """The candidate with the lowest validation MAPE, refitted on all rows.

    ``candidates``: name -> factory(seed) (default :func:`candidates` of ``space``
    without the MLP). After ``fit``: ``chosen_``, ``estimator_``, ``validation_``.
    """

    def __init__(self, space: str = "anb", candidates: Mapping[str, Factory] | None = None,
                 val_share: float = 0.2, seed: int = 0):
        self.space = space
        self.candidates = candidates
        self.val_share = val_share
        self.seed = seed

    def fit(self, X, y):
        """Select on a validation split of ``X``, refit the chosen one; returns self."""
        own = self.candidates is None  # then every candidate is of ``space``: convert X once
        cands = candidates(self.space, with_mlp=False) if own else self.candidates
        sel = select_and_fit(cands, X, y, seed=self.seed, val_share=self.val_share, refit="chosen",
                             space=self.space if own else None)
        self.chosen_, self.estimator_, self.validation_ = sel.chosen, sel.best, sel.validation
        return self

    def predict(self, X) -> np.ndarray:
        """Latencies (ms) from the chosen model."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)
