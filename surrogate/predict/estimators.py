"""Latency predictors with scikit-learn's estimator contract.

All take architectures (``Arch`` objects, architecture strings or an index array
of the space; see :func:`~surrogate.predict.features.as_indices`) and latencies in
ms. ``predict`` also prices networks outside the space (a list of ``Arch`` objects,
strings, reference names or index vectors, mixed) as
:func:`~surrogate.predict.pricing.price_many` does; an integer index array stays on the
vectorised path. ``__init__`` only stores arguments; ``fit`` returns ``self``; learned state
ends in ``_``.

- :class:`FlopsLinear`: latency ~ a * MAdds + b, the proxy the paper shows is
  unreliable (a baseline).
- :class:`TableSum`: the sum of operator-table entries (ProxylessNAS/FBNet style),
  optionally calibrated by a linear fit on a few end-to-end timings.
- :class:`LatencyModel`: a learned regressor (XGBoost, scikit-learn models, a torch
  MLP) on :class:`~surrogate.predict.features.ArchFeatures`, table terms included,
  fitted on log latency.
- :class:`ResidualLatency`: the table sum corrected by a learned model of
  ``log(measured / table sum)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .features import PARTS, ArchFeatures, as_indices
from .optable import OpTable
from .pricing import Pricing, predict_any, price_many
from .regressors import MODELS, make_regressor  # noqa: F401 - re-exported
from .regressors import _check_y, load_regressor, save_regressor

PREDICT_CHUNK = 8192  # rows per featurise + regress step in LatencyModel.predict


class _SpaceEstimator(RegressorMixin, BaseEstimator):
    """Shared input handling: the space and (optionally) the operator table.

    Subclasses predict members from index rows (:meth:`_predict_members`) and own their
    saved state (:meth:`_saved_state`, :meth:`_from_saved`; see :mod:`.persist`).
    """

    _FITTED_ATTR = "features_"  # present once fitted (persist refuses to save before)

    def _featuriser(self, parts: Sequence[str]) -> ArchFeatures:
        return ArchFeatures(space=self.space, table=getattr(self, "table", None), parts=parts).fit()

    def _idx(self, X) -> np.ndarray:
        check_is_fitted(self, "features_")
        return as_indices(self.features_.space_, X)

    def _predict_members(self, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        """Predicted latency (ms) per network, in input order.

        An integer index array goes straight to the model. A list may mix index vectors,
        ``Arch`` objects, strings and reference names: members of the space through the
        model, any other network priced from operators as :meth:`price` does.
        """
        check_is_fitted(self, "features_")
        if isinstance(X, np.ndarray) and X.dtype.kind in "iu":
            return self._predict_members(as_indices(self.features_.space_, X))
        return predict_any(self, X)

    def price(self, arch, *, breakdown: bool = False) -> Pricing:
        """Latency of any network (``Arch``, string or reference name), with how it was priced.

        A member of the space goes through the full model; any other network through
        the operator table + an operator-level model (:mod:`~surrogate.predict.pricing`).
        """
        return self.price_many([arch], breakdown=breakdown)[0]

    def price_many(self, archs, *, breakdown: bool = False) -> list[Pricing]:
        """:meth:`price` of each network; members are predicted in one batch."""
        check_is_fitted(self, "features_")
        return price_many(self, archs, breakdown=breakdown)


def _affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``y ~ a x + b`` plus the positive floor ratio ``min(y / x) / 2``.

    A line fitted on a few rows extrapolates to zero or below for small inputs (a
    negative intercept is normal: an operator table counts per-operator overhead a
    whole network amortises). Predictions are ``max(a x + b, floor * x)``, so they stay
    positive and never fall below half the smallest measured ratio.
    """
    if len(x) >= 2 and np.ptp(x) > 0:
        A = np.column_stack([x, np.ones_like(x)])
        (a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
    else:  # one row: a pure ratio
        a, b = float(np.median(y / x)), 0.0
    return float(a), float(b), float(np.min(y / x)) / 2.0


def _affine(x: np.ndarray, coef: float, intercept: float, floor: float) -> np.ndarray:
    return np.maximum(coef * x + intercept, floor * x)


class _AffineEstimator(_SpaceEstimator):
    """``max(a x + b, floor x)`` of one feature part's term (:data:`_PARTS`); saved inline."""

    _PARTS: tuple[str, ...] = ()

    def _saved_state(self, folder: Path, **_) -> dict:
        """The fitted line as JSON-ready numbers (no side files)."""
        return {"coef": float(self.coef_), "intercept": float(self.intercept_),
                "floor_ratio": float(self.floor_ratio_)}

    @classmethod
    def _from_saved(cls, params: dict, fitted: dict, folder: Path, table: OpTable | None,
                    meta: dict, **_) -> "_AffineEstimator":
        """The fitted estimator of :meth:`_saved_state`'s record."""
        est = cls(**params)
        est.features_ = est._featuriser(cls._PARTS)
        est.coef_, est.intercept_ = fitted["coef"], fitted["intercept"]
        est.floor_ratio_ = float(fitted.get("floor_ratio", 0.0))  # files before the floor: none
        est.n_features_in_ = est.features_.space_.n_decisions
        return est


class FlopsLinear(_AffineEstimator):
    """latency = a * MAdds + b (least squares), floored at a positive share of MAdds."""

    _PARTS = ("counts",)

    def __init__(self, space: str = "anb"):
        self.space = space

    def fit(self, X, y):
        """Least-squares fit of latency on total MAdds; returns self."""
        self.features_ = self._featuriser(self._PARTS)
        idx = self._idx(X)
        y = _check_y(y, len(idx))
        m = self.features_.compiled_.terms(idx)["total_madds"]
        self.coef_, self.intercept_, self.floor_ratio_ = _affine_fit(m, y)
        self.n_features_in_ = self.features_.space_.n_decisions
        return self

    def _predict_members(self, idx: np.ndarray) -> np.ndarray:
        return _affine(self.features_.compiled_.terms(idx)["total_madds"], self.coef_, self.intercept_,
                       self.floor_ratio_)


class TableSum(_AffineEstimator):
    """Sum of operator-table latencies; ``calibrate`` fits ``a * sum + b`` on timings.

    A calibrated sum is floored at half the smallest measured/sum ratio of the
    calibration rows, so extrapolating to small networks never gives ``<= 0`` ms.

    ``table``: an :class:`~surrogate.predict.optable.OpTable`, a CSV path or
    ``'shipped:<profile>'``. Without calibration ``fit`` needs no timings
    (``y`` may be None).
    """

    _PARTS = ("table",)

    def __init__(self, space: str = "anb", table=None, calibrate: bool = False):
        self.space = space
        self.table = table
        self.calibrate = calibrate

    def fit(self, X=None, y=None):
        """Compile the table; with ``calibrate`` and ``y``, fit a linear calibration; returns self."""
        if self.table is None:
            raise ValueError("TableSum needs an operator table (table=...)")
        self.features_ = self._featuriser(self._PARTS)
        self.n_features_in_ = self.features_.space_.n_decisions
        self.coef_, self.intercept_, self.floor_ratio_ = 1.0, 0.0, 0.0
        if self.calibrate:
            if X is None or y is None:
                raise ValueError("TableSum(calibrate=True) needs end-to-end timings to fit")
            s = self.features_.table_sum(X)
            y = _check_y(y, len(s))
            self.coef_, self.intercept_, self.floor_ratio_ = _affine_fit(s, y)
        return self

    def _predict_members(self, idx: np.ndarray) -> np.ndarray:
        return _affine(self.features_.table_sum(idx), self.coef_, self.intercept_, self.floor_ratio_)


class LatencyModel(_SpaceEstimator):
    """A learned regressor on architecture features, fitted on ``log(latency)``.

    ``model``: ``xgb`` (default), ``rf``, ``extratrees``, ``hgb``, ``ridge``, ``mlp``.
    ``parts``: feature groups (``encoding``, ``counts``, ``table``); ``table`` needs an
    operator table. ``residual=True`` learns ``log(y / table_sum)`` instead.
    """

    def __init__(self, space: str = "anb", table=None, model: str = "xgb",
                 parts: Sequence[str] = PARTS, residual: bool = False,
                 model_params: dict | None = None, random_state: int | None = 0):
        self.space = space
        self.table = table
        self.model = model
        self.parts = parts
        self.residual = residual
        self.model_params = model_params
        self.random_state = random_state

    def _parts(self) -> tuple[str, ...]:
        parts = tuple(self.parts)
        if self.table is None:
            parts = tuple(p for p in parts if p != "table")
        if self.residual and self.table is None:
            raise ValueError("residual=True needs an operator table (table=...)")
        return parts

    def fit(self, X, y):
        """Featurise ``X`` and fit the regressor on ``y`` (ms); returns self."""
        self.features_ = self._featuriser(self._parts())
        idx = self._idx(X)
        y = _check_y(y, len(idx))
        F = self.features_.transform(idx)
        target = np.log(y)
        if self.residual:
            target = target - np.log(self._table_sum(idx))
        self.regressor_ = make_regressor(self.model, self.random_state, **(self.model_params or {}))
        self.regressor_.fit(F, target)
        self.n_features_in_ = self.features_.space_.n_decisions
        return self

    def _table_sum(self, idx) -> np.ndarray:
        return self.features_.compiled_.table_sum(idx)

    def _predict_idx(self, idx) -> np.ndarray:
        out = self.regressor_.predict(self.features_.transform(idx))
        if self.residual:
            out = out + np.log(self._table_sum(idx))
        return np.exp(out)

    def _predict_members(self, idx: np.ndarray) -> np.ndarray:
        """In chunks of :data:`PREDICT_CHUNK` rows."""
        n = len(idx)
        if n <= PREDICT_CHUNK:
            return self._predict_idx(idx)
        # in chunks: features and the MLP's activations stay in cache (2x faster at 100k)
        out = np.empty(n)
        for i in range(0, n, PREDICT_CHUNK):
            out[i: i + PREDICT_CHUNK] = self._predict_idx(idx[i: i + PREDICT_CHUNK])
        return out

    def _saved_state(self, folder: Path, **_) -> dict:
        """The regressor's record; XGBoost and MLP models write their file into ``folder``."""
        return save_regressor(self.model, self.regressor_, folder)

    @classmethod
    def _from_saved(cls, params: dict, fitted: dict, folder: Path, table: OpTable | None,
                    meta: dict, **_) -> "LatencyModel":
        """The fitted estimator of :meth:`_saved_state`'s record and files in ``folder``."""
        est = cls(**params)
        est.features_ = est._featuriser(est._parts())
        est.regressor_ = load_regressor(est.model, est.random_state, est.model_params, fitted, folder)
        est.n_features_in_ = est.features_.space_.n_decisions
        return est


class ResidualLatency(LatencyModel):
    """Table sum times a learned correction ``exp(f(features))``."""

    def __init__(self, space: str = "anb", table=None, model: str = "xgb",
                 parts: Sequence[str] = PARTS, residual: bool = True,
                 model_params: dict | None = None, random_state: int | None = 0):
        super().__init__(space=space, table=table, model=model, parts=parts, residual=residual,
                         model_params=model_params, random_state=random_state)
