"""A predictor for a new device from K end-to-end timings plus another device's predictor.

``log y_target = a * log s(x) + b + r(x)``: ``s`` is the source prediction (another
device's predictor or table), ``a, b`` a calibration fitted on the K timings, and
``r`` an optional residual model on architecture features, used only when K is
large enough for it to help (``min_residual``): a ridge model with its strength
chosen by leave-one-out cross-validation, or, from ``min_boost`` timings on
(``residual='auto'``), gradient-boosted trees where K-fold cross-validation on the
K timings says they beat the ridge model (device effects that are not linear in
the features, e.g. TPUv2 from TPUv3 in Accel-NASBench: MAPE 5.8% -> 3.7% at K = 500).

Both the calibration and the ridge model are robust by default (``robust``, a Huber
constant): iteratively reweighted least squares with Huber weights on residuals
scaled by their median absolute deviation, so that the occasional slow outlier run,
common in end-to-end phone timings, does not drag them (the trees then use an
absolute-error loss). On the HELP FBNet phones this lowered the few-shot MAPE at
K >= 20 (e.g. samsung_a50 from pixel2 at K = 500: 4.8% -> 3.8%; see
``bench/help_phones.py``). ``robust=None`` gives ordinary least squares. A fitted
slope ``a <= 0`` (a few timings against an unrelated source, e.g. a GPU at batch 1
for a phone) falls back to a pure ratio, which keeps the source's ranking.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .features import ArchFeatures, as_indices
from .regressors import _check_y

RESIDUALS = ("ridge", "boost", "auto")
BOOST_DEFAULTS = dict(n_estimators=300, learning_rate=0.1, max_depth=3, subsample=0.8, n_jobs=1,
                      random_state=0, tree_method="hist")


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
    reweighting rounds. ``residual``: ``'ridge'``, ``'boost'`` (XGBoost, from
    ``min_residual`` timings) or ``'auto'`` (ridge; from ``min_boost`` timings the
    better of ridge and boost by ``cv``-fold cross-validated mean |log error|).
    ``boost_params`` override the XGBoost settings. After ``fit``: ``a_``, ``b_``,
    ``residual_`` (None or the fitted model), ``residual_kind_``, ``cv_errors_``.
    """

    def __init__(self, space: str = "anb", source=None, min_residual: int = 20,
                 parts: tuple[str, ...] = ("encoding", "counts"), alphas=None,
                 robust: float | None = 1.345, n_iter: int = 5, residual: str = "auto",
                 min_boost: int = 100, cv: int = 5, boost_params: dict | None = None):
        self.space = space
        self.source = source
        self.min_residual = min_residual
        self.parts = parts
        self.alphas = alphas
        self.robust = robust
        self.n_iter = n_iter
        self.residual = residual
        self.min_boost = min_boost
        self.cv = cv
        self.boost_params = boost_params

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

    # -- the two stages ------------------------------------------------------------------
    def _calibrate(self, ls: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
        if len(ly) < 3 or not np.ptp(ls) > 0:  # too few points for a slope: a pure ratio
            return 1.0, float(np.mean(ly - ls))
        rounds = self._rounds()
        A = np.column_stack([ls, np.ones_like(ls)])
        w = np.ones_like(ly)
        for i in range(rounds):
            sw = np.sqrt(w)
            (a, b), *_ = np.linalg.lstsq(A * sw[:, None], ly * sw, rcond=None)
            if i + 1 < rounds:
                w = huber_weights(ly - (a * ls + b), self.robust)
        if not a > 0:  # latency does not fall as the source's rises: noise; keep the ranking
            d = ly - ls
            return 1.0, float(np.mean(d) if self.robust is None else np.median(d))
        return float(a), float(b)

    def _fit_ridge(self, F: np.ndarray, r: np.ndarray):
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        alphas = self.alphas if self.alphas is not None else np.logspace(-2, 4, 13)
        rounds = self._rounds()
        w = np.ones_like(r) if self.robust is None else huber_weights(r, self.robust)
        for i in range(rounds):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
            model.fit(F, r, ridgecv__sample_weight=w)
            if i + 1 < rounds:
                w = huber_weights(r - model.predict(F), self.robust)
        return model

    def _fit_boost(self, F: np.ndarray, r: np.ndarray):
        from xgboost import XGBRegressor

        obj = "reg:squarederror" if self.robust is None else "reg:absoluteerror"
        return XGBRegressor(**{**BOOST_DEFAULTS, "objective": obj, **(self.boost_params or {})}).fit(F, r)

    def _fit_all(self, ls, ly, F, kind: str | None):
        a, b = self._calibrate(ls, ly)
        if kind is None:
            return a, b, None
        r = ly - (a * ls + b)
        return a, b, (self._fit_ridge(F, r) if kind == "ridge" else self._fit_boost(F, r))

    def _kind(self, n: int, ls, ly, F) -> str | None:
        if self.residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {self.residual!r}")
        self.cv_errors_ = None
        if n < self.min_residual:
            return None
        if self.residual != "auto":
            return self.residual
        if n < max(self.min_boost, 2 * self.cv):
            return "ridge"
        from sklearn.model_selection import KFold

        errs: dict[str, list[float]] = {"ridge": [], "boost": []}
        for tr, va in KFold(self.cv, shuffle=True, random_state=0).split(F):
            for kind in errs:
                a, b, m = self._fit_all(ls[tr], ly[tr], F[tr], kind)
                p = a * ls[va] + b + m.predict(F[va])
                errs[kind].append(float(np.mean(np.abs(p - ly[va]))))
        self.cv_errors_ = {k: float(np.mean(v)) for k, v in errs.items()}
        return min(self.cv_errors_, key=self.cv_errors_.get)

    # -- estimator API -----------------------------------------------------------------------
    def fit(self, X, y):
        """Calibrate the source prediction on K target timings (log-linear, robust), then the residual; returns self."""
        self.features_ = ArchFeatures(space=self.space, parts=self.parts).fit()
        idx = as_indices(self.features_.space_, X)
        y = _check_y(y, len(idx))
        ls, ly = np.log(self._source(idx)), np.log(y)
        F = self.features_.transform(idx) if len(y) >= self.min_residual else None
        self.residual_kind_ = self._kind(len(y), ls, ly, F)
        self.a_, self.b_, self.residual_ = self._fit_all(ls, ly, F, self.residual_kind_)
        self.n_features_in_ = self.features_.space_.n_decisions
        return self

    def predict(self, X):
        """Predicted target-device latency (ms) per architecture."""
        check_is_fitted(self, "features_")
        idx = as_indices(self.features_.space_, X)
        out = self.a_ * np.log(self._source(idx)) + self.b_
        if self.residual_ is not None:
            out = out + self.residual_.predict(self.features_.transform(idx))
        return np.exp(out)
