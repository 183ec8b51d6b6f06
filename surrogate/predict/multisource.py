"""A predictor for a new device from K timings and several source devices at once.

:class:`MultiSourceTransfer` fits, on the K target timings,

``t(y) = b + sum_j w_j z_j(x) + F(x) @ d``

where ``t`` is ``log`` (mode ``log``) or the identity (mode ``linear``), ``z_j`` the
source predictions in the same space (log ms or ms), ``F`` architecture features
(the space's one-hot encoding and counts) and ``b`` an unpenalised intercept. The
source weights ``w`` carry a ridge penalty ``beta`` and the residual ``d`` a ridge
penalty ``alpha``. The idea is HELP's (Lee et al., NeurIPS 2021): describe a new
device by how the known devices' latencies explain its few timings. Here that is
done by a convex fit, not by meta-learning.

Every (mode, sources, beta, alpha) candidate is scored by its exact leave-one-out
error on the K timings, and the lowest mean ``|log(pred / y)|`` wins. The candidates
are each single source calibrated (``a z_j + b``, nearly unpenalised) and all sources
together under several ``beta``; ``alpha`` runs over a grid and infinity (no
residual). The LOO error is exact for both penalties at once: with ``A`` the centred
columns and ``P`` their penalties, the hat matrix is ``G (G + I)^-1 + 11'/K`` with
``G = A P^-1 A'`` (K x K), so one eigendecomposition prices every candidate. With few
timings the residual loses the LOO comparison (``alpha = inf``). As K grows, a finite
``alpha`` wins and the residual's weight grows. Linear mode suits devices that are
near-additive in ms (the HELP Raspberry Pi and Pixel 3 are exactly additive).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .features import ArchFeatures, as_indices
from .regressors import _check_y

MODES = ("log", "linear")
#: residual penalties tried (on features standardised over the space), plus infinity
ALPHAS = tuple(float(a) for a in np.logspace(-1, 4, 6))
#: source-weight penalties of the all-sources candidate (standardised source columns)
BETAS = (1.0, 10.0, 100.0)
SINGLE_BETA = 1e-6
SCALER_SAMPLE = 2048  # seeded members of the space that fix the feature scaling
_FEATURES: dict[tuple[str, tuple[str, ...]], tuple[ArchFeatures, np.ndarray, np.ndarray]] = {}


def space_features(space: str, parts: tuple[str, ...]) -> tuple[ArchFeatures, np.ndarray, np.ndarray]:
    """(fitted ArchFeatures, mean, scale) over :data:`SCALER_SAMPLE` seeded members of the
    space; cached per (space, parts), as both are fixed by the space alone."""
    key = (space, tuple(parts))
    if key not in _FEATURES:
        feats = ArchFeatures(space=space, parts=tuple(parts)).fit()
        sp = feats.space_
        ref = feats.transform(sp.sample_indices(np.random.default_rng(0), SCALER_SAMPLE))
        sd = ref.std(axis=0)
        _FEATURES[key] = (feats, ref.mean(axis=0), np.where(sd > 1e-12, sd, 1.0))
    return _FEATURES[key]


def source_matrix(sources: Mapping[str, Any], X) -> np.ndarray:
    """Predictions (ms) of every source on ``X``: an (n, n_sources) array, checked positive."""
    cols = []
    for name, src in sources.items():
        f: Callable = src.predict if hasattr(src, "predict") else src
        s = np.asarray(f(X), dtype=np.float64).ravel()
        if not np.all(np.isfinite(s)) or (s <= 0).any():
            raise ValueError(f"source {name!r} predicted non-positive or non-finite latencies")
        cols.append(s)
    if not cols:
        raise ValueError("MultiSourceTransfer needs at least one source (sources={name: predictor})")
    return np.column_stack(cols)


def _loo(G: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(leave-one-out residuals, dual coefficients, effective degrees of freedom) of the
    kernel ridge ``G`` with a free intercept."""
    k = len(t)
    tc = t - t.mean()
    lam, V = np.linalg.eigh(G)
    lam = np.maximum(lam, 0.0)
    h = lam / (lam + 1.0)
    Vt = V.T @ tc
    fit = V @ (h * Vt)
    H_diag = (V ** 2) @ h + 1.0 / k
    e = (tc - fit) / np.maximum(1.0 - H_diag, 1e-9)
    c = V @ (Vt / (lam + 1.0))
    return e, c, float(h.sum() + 1.0)


class MultiSourceTransfer(RegressorMixin, BaseEstimator):
    """Several calibrated sources plus a residual, chosen by leave-one-out on the K timings.

    ``space``: the space name. ``sources``: name -> fitted predictor (``.predict``) or
    callable ``X -> ms`` of a known device. ``parts``: feature parts of the residual.
    ``modes``: ``log`` and/or ``linear``. ``alphas`` / ``betas``: penalty grids
    (default :data:`ALPHAS`, :data:`BETAS`). ``min_residual``: below this many timings
    no residual is tried. ``floor``: linear-mode predictions are floored at this share
    of the smallest timing seen. ``one_se``: among the candidates whose LOO error is
    within one standard error of the lowest, take the one with the fewest effective
    degrees of freedom (``trace`` of its hat matrix); the classic one-standard-error
    rule, which keeps a few noisy timings from picking a needlessly flexible fit.

    After ``fit``: ``mode_``, ``choice_`` (``'all'`` or a source name), ``beta_``,
    ``alpha_`` (``inf``: no residual), ``loo_error_`` (mean ``|log(pred / y)|``),
    ``weights_`` (per source, in the mode's units), ``intercept_``, ``residual_coef_``,
    ``feature_mean_`` / ``feature_scale_``, ``source_names_``, ``candidates_`` (the
    best LOO error of each (mode, choice)).
    """

    def __init__(self, space: str = "fbnet", sources: Mapping[str, Any] | None = None,
                 parts: tuple[str, ...] = ("encoding", "counts"), modes: tuple[str, ...] = MODES,
                 alphas: tuple[float, ...] | None = None, betas: tuple[float, ...] | None = None,
                 min_residual: int = 10, floor: float = 0.25, one_se: bool = True):
        self.space = space
        self.sources = sources
        self.parts = parts
        self.modes = modes
        self.alphas = alphas
        self.betas = betas
        self.min_residual = min_residual
        self.floor = floor
        self.one_se = one_se

    # -- pieces ---------------------------------------------------------------------------
    def _features(self, idx: np.ndarray) -> np.ndarray:
        F = self.features_.transform(idx)
        return (F - self.feature_mean_) / self.feature_scale_

    def _z(self, S: np.ndarray, mode: str) -> np.ndarray:
        return np.log(S) if mode == "log" else S

    def _candidates(self, names: list[str]):
        betas = tuple(self.betas) if self.betas is not None else BETAS
        out = [(n, j, SINGLE_BETA) for j, n in enumerate(names)]
        if len(names) > 1:
            out += [("all", None, b) for b in betas]
        return out

    # -- estimator API ----------------------------------------------------------------------
    def fit(self, X, y):
        """Score every candidate by exact LOO on the K timings and keep the best; returns self."""
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes: expected some of {MODES}, got {self.modes!r}")
        self.features_, self.feature_mean_, self.feature_scale_ = space_features(
            self.space, tuple(self.parts))
        sp = self.features_.space_
        idx = as_indices(sp, X)
        y = _check_y(y, len(idx))
        if len(y) < 3:
            raise ValueError(f"MultiSourceTransfer needs at least 3 timings, got {len(y)}")
        self.source_names_ = list((self.sources or {}).keys())
        S = source_matrix(self.sources or {}, idx)
        F = self._features(idx)
        Fc = F - F.mean(axis=0)
        alphas = [float(a) for a in (self.alphas if self.alphas is not None else ALPHAS)]
        if len(y) < self.min_residual:
            alphas = []
        alphas = [np.inf] + alphas
        FF = Fc @ Fc.T
        k = len(y)
        scored = []
        self.candidates_ = {}
        for mode in self.modes:
            t = np.log(y) if mode == "log" else y
            Z = self._z(S, mode)
            zs = Z.std(axis=0)
            zs = np.where(zs > 1e-12, zs, 1.0)
            Zc = (Z - Z.mean(axis=0)) / zs
            for choice, j, beta in self._candidates(self.source_names_):
                A = Zc if j is None else Zc[:, [j]]
                GS = (A @ A.T) / beta
                for alpha in alphas:
                    G = GS if not np.isfinite(alpha) else GS + FF / alpha
                    e, c, df = _loo(G, t)
                    pred = t - e
                    if mode == "log":
                        a_err = np.abs(e)
                    else:
                        pred = np.maximum(pred, self.floor * y.min())
                        a_err = np.abs(np.log(pred / y))
                    err = float(np.mean(a_err))
                    key = f"{mode}:{choice}"
                    self.candidates_[key] = min(self.candidates_.get(key, np.inf), err)
                    scored.append((err, float(np.std(a_err) / np.sqrt(k)), df,
                                   (mode, choice, j, beta, alpha, c, zs, Z.mean(axis=0))))
        err, se, _, _ = min(scored, key=lambda r: r[0])
        if self.one_se:  # the simplest candidate within one standard error of the best
            ok = [r for r in scored if r[0] <= err + se]
            err, _, _, pick = min(ok, key=lambda r: (r[2], r[0]))
        else:
            pick = min(scored, key=lambda r: r[0])[3]
        mode, choice, j, beta, alpha, c, zs, zmean = pick
        t = np.log(y) if mode == "log" else y
        Z = self._z(S, mode)
        Zc = (Z - zmean) / zs
        w_std = np.zeros(len(self.source_names_))
        cols = list(range(len(w_std))) if j is None else [j]
        w_std[cols] = (Zc[:, cols].T @ c) / beta
        d = (Fc.T @ c) / alpha if np.isfinite(alpha) else np.zeros(F.shape[1])
        self.mode_, self.choice_, self.beta_, self.alpha_ = mode, choice, float(beta), float(alpha)
        self.loo_error_ = err
        self.weights_ = w_std / zs
        self.residual_coef_ = d
        self.intercept_ = float(t.mean() - zmean @ self.weights_ - F.mean(axis=0) @ d)
        self.y_min_ = float(y.min())
        self.n_features_in_ = sp.n_decisions
        self.k_ = k
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted target-device latency (ms) per architecture."""
        check_is_fitted(self, "weights_")
        idx = as_indices(self.features_.space_, X)
        Z = self._z(source_matrix(self.sources or {}, idx), self.mode_)
        out = self.intercept_ + Z @ self.weights_
        if np.any(self.residual_coef_ != 0):
            out = out + self._features(idx) @ self.residual_coef_
        if self.mode_ == "log":
            return np.exp(out)
        return np.maximum(out, self.floor * self.y_min_)

    def summary(self) -> dict:
        """The fitted choice as JSON-ready numbers (mode, sources and weights, penalties, LOO)."""
        check_is_fitted(self, "weights_")
        return {"mode": self.mode_, "choice": self.choice_, "beta": self.beta_,
                "alpha": None if not np.isfinite(self.alpha_) else self.alpha_,
                "residual": bool(np.isfinite(self.alpha_)), "k": self.k_,
                "loo_mean_abs_log_error": self.loo_error_,
                "weights": dict(zip(self.source_names_, map(float, self.weights_)))}
