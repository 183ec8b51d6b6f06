"""A predictor for a new device from K end-to-end timings plus another device's predictor.

``log y_target = a * log s(x) + b + r(x)``: ``s`` is the source prediction (another
device's predictor or table), ``a, b`` a calibration fitted on the K timings, and
``r`` an optional ridge residual model on architecture features, used only when K
is large enough for it to help (``min_residual``), with its strength chosen by
leave-one-out cross-validation.

Both fits are robust by default (``robust``, a Huber constant): iteratively
reweighted least squares with Huber weights on residuals scaled by their median
absolute deviation, so that the occasional slow outlier run, common in end-to-end
phone timings, does not drag the calibration or the residual model. On the HELP
FBNet phones this lowered the few-shot MAPE at K >= 20 (e.g. samsung_a50 from
pixel2 at K = 500: 4.8% -> 3.8%; see ``bench/help_phones.py``). ``robust=None``
gives ordinary least squares.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .estimators import _check_y
from .features import ArchFeatures, as_indices


def huber_weights(r: np.ndarray, c: float) -> np.ndarray:
    """IRLS weights ``min(1, c / |r / s|)`` with ``s`` = 1.4826 x MAD of ``r``."""
    r = np.asarray(r, dtype=np.float64)
    s = 1.4826 * np.median(np.abs(r - np.median(r)))
    if not s > 0:
        return np.ones_like(r)
    z = np.abs(r) / s
    return np.minimum(1.0, c / np.maximum(z, 1e-12))


class FewShotTransfer(RegressorMixin, BaseEstimator):
    """Calibrated source prediction plus a residual model.

    ``source``: a fitted predictor (``.predict(X)``) or a callable ``X -> ms`` of
    the source device. ``parts``: features of the residual model. ``robust``: the
    Huber constant of the reweighting (None: plain least squares); ``n_iter``:
    reweighting rounds.
    """

    def __init__(self, space: str = "anb", source=None, min_residual: int = 20,
                 parts: tuple[str, ...] = ("encoding", "counts"), alphas=None,
                 robust: float | None = 1.345, n_iter: int = 5):
        self.space = space
        self.source = source
        self.min_residual = min_residual
        self.parts = parts
        self.alphas = alphas
        self.robust = robust
        self.n_iter = n_iter

    def _source(self, X) -> np.ndarray:
        src = self.source
        if src is None:
            raise ValueError("FewShotTransfer needs a source predictor or callable (source=...)")
        f: Callable = src.predict if hasattr(src, "predict") else src
        s = np.asarray(f(X), dtype=np.float64).ravel()
        if not np.all(np.isfinite(s)) or (s <= 0).any():
            raise ValueError("the source predicted non-positive or non-finite latencies")
        return s

    def _rounds(self) -> int:
        if self.robust is not None and not self.robust > 0:
            raise ValueError(f"robust must be a positive Huber constant or None, got {self.robust!r}")
        return 1 if self.robust is None else 1 + max(0, int(self.n_iter))

    def fit(self, X, y):
        self.features_ = ArchFeatures(space=self.space, parts=self.parts).fit()
        idx = as_indices(self.features_.space_, X)
        y = _check_y(y, len(idx))
        ls, ly = np.log(self._source(idx)), np.log(y)
        rounds = self._rounds()
        w = np.ones_like(ly)
        if len(y) >= 3 and np.ptp(ls) > 0:
            A = np.column_stack([ls, np.ones_like(ls)])
            for i in range(rounds):
                sw = np.sqrt(w)
                (self.a_, self.b_), *_ = np.linalg.lstsq(A * sw[:, None], ly * sw, rcond=None)
                if i + 1 < rounds:
                    w = huber_weights(ly - (self.a_ * ls + self.b_), self.robust)
        else:  # too few points for a slope: a pure ratio
            self.a_, self.b_ = 1.0, float(np.mean(ly - ls))
        self.residual_ = None
        if len(y) >= self.min_residual:
            from sklearn.linear_model import RidgeCV
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            alphas = self.alphas if self.alphas is not None else np.logspace(-2, 4, 13)
            r = ly - (self.a_ * ls + self.b_)
            F = self.features_.transform(idx)
            w = np.ones_like(r) if self.robust is None else huber_weights(r, self.robust)
            for i in range(rounds):
                model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
                model.fit(F, r, ridgecv__sample_weight=w)
                if i + 1 < rounds:
                    w = huber_weights(r - model.predict(F), self.robust)
            self.residual_ = model
        self.weights_ = w
        self.n_features_in_ = self.features_.space_.n_decisions
        return self

    def predict(self, X):
        check_is_fitted(self, "features_")
        idx = as_indices(self.features_.space_, X)
        out = self.a_ * np.log(self._source(idx)) + self.b_
        if self.residual_ is not None:
            out = out + self.residual_.predict(self.features_.transform(idx))
        return np.exp(out)
