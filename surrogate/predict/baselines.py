"""Simple reference predictors a learned model has to beat.

:class:`Additive`: the additive per-(layer, op) latency model of lookup-table NAS
(FBNet, ProxylessNAS; SPEC section 3): one-hot of each searchable position's choice,
ordinary least squares on ms, so each (layer, op) pair gets its own cost.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from space.spaces import get_space

from .features import as_indices
from .regressors import _check_y


class Additive(RegressorMixin, BaseEstimator):
    """latency = intercept + sum over positions of a cost per (position, choice).

    ``X``: architectures, architecture strings (both canonicalised) or an ``(n,
    n_decisions)`` index array, used as given (so a benchmark's own layer order is
    kept). After ``fit``: ``space_``, ``coef_`` (one cost per one-hot column, ms),
    ``intercept_``.
    """

    _FITTED_ATTR = "coef_"  # present once fitted (persist refuses to save before)

    def __init__(self, space: str = "fbnet"):
        self.space = space

    def _onehot(self, X) -> np.ndarray:
        return self.space_.onehot(as_indices(self.space_, X)).astype(np.float64)

    def fit(self, X, y):
        """Least squares of latency on the one-hot encoding; returns self."""
        from sklearn.linear_model import LinearRegression

        self.space_ = get_space(self.space)
        F = self._onehot(X)
        lr = LinearRegression().fit(F, _check_y(y, len(F)))
        self.coef_, self.intercept_ = lr.coef_.astype(np.float64), float(lr.intercept_)
        return self

    def predict(self, X) -> np.ndarray:
        """Latencies (ms) of ``X``."""
        check_is_fitted(self, "coef_")
        return self._onehot(X) @ self.coef_ + self.intercept_

    def _saved_state(self, folder: Path, **_) -> dict:
        """The fitted costs as JSON-ready numbers (no side files)."""
        return {"coef": self.coef_.tolist(), "intercept": float(self.intercept_)}

    @classmethod
    def _from_saved(cls, params: dict, fitted: dict, folder: Path, table, meta: dict,
                    **_) -> "Additive":
        """The fitted estimator of :meth:`_saved_state`'s record."""
        est = cls(**params)
        est.space_ = get_space(est.space)
        est.coef_ = np.asarray(fitted["coef"], dtype=np.float64)
        est.intercept_ = float(fitted["intercept"])
        return est
