"""A predictor for a new device from K end-to-end timings plus another device's predictor.

``log y_target = a * log s(x) + b + r(x)``: ``s`` is the source prediction (another
device's predictor or table), ``a, b`` a calibration fitted on the K timings, and
``r`` an optional ridge residual model on architecture features, used only when K
is large enough for it to help (``min_residual``), with its strength chosen by
leave-one-out cross-validation.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .estimators import _check_y
from .features import ArchFeatures, as_indices


class FewShotTransfer(RegressorMixin, BaseEstimator):
    """Calibrated source prediction plus a residual model.

    ``source``: a fitted predictor (``.predict(X)``) or a callable ``X -> ms`` of
    the source device. ``parts``: features of the residual model.
    """

    def __init__(self, space: str = "anb", source=None, min_residual: int = 20,
                 parts: tuple[str, ...] = ("encoding", "counts"), alphas=None):
        self.space = space
        self.source = source
        self.min_residual = min_residual
        self.parts = parts
        self.alphas = alphas

    def _source(self, X) -> np.ndarray:
        src = self.source
        if src is None:
            raise ValueError("FewShotTransfer needs a source predictor or callable (source=...)")
        f: Callable = src.predict if hasattr(src, "predict") else src
        s = np.asarray(f(X), dtype=np.float64).ravel()
        if not np.all(np.isfinite(s)) or (s <= 0).any():
            raise ValueError("the source predicted non-positive or non-finite latencies")
        return s

    def fit(self, X, y):
        self.features_ = ArchFeatures(space=self.space, parts=self.parts).fit()
        idx = as_indices(self.features_.space_, X)
        y = _check_y(y, len(idx))
        ls, ly = np.log(self._source(idx)), np.log(y)
        if len(y) >= 3 and np.ptp(ls) > 0:
            A = np.column_stack([ls, np.ones_like(ls)])
            (self.a_, self.b_), *_ = np.linalg.lstsq(A, ly, rcond=None)
        else:  # too few points for a slope: a pure ratio
            self.a_, self.b_ = 1.0, float(np.mean(ly - ls))
        self.residual_ = None
        if len(y) >= self.min_residual:
            from sklearn.linear_model import RidgeCV
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            alphas = self.alphas if self.alphas is not None else np.logspace(-2, 4, 13)
            r = ly - (self.a_ * ls + self.b_)
            self.residual_ = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
            self.residual_.fit(self.features_.transform(idx), r)
        self.n_features_in_ = self.features_.space_.n_decisions
        return self

    def predict(self, X):
        check_is_fitted(self, "features_")
        idx = as_indices(self.features_.space_, X)
        out = self.a_ * np.log(self._source(idx)) + self.b_
        if self.residual_ is not None:
            out = out + self.residual_.predict(self.features_.transform(idx))
        return np.exp(out)
