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
residual). With few timings the residual loses the LOO comparison (``alpha = inf``).
As K grows, a finite ``alpha`` wins and the residual's weight grows. Linear mode suits
devices that are near-additive in ms (the HELP Raspberry Pi and Pixel 3 are exactly
additive).

No fit may turn the sources over. A candidate whose unconstrained source part runs
against the sources' consensus (``w' C 1 <= 0``, ``C`` the standardised sources'
scatter; every weight negative is the plain case) or gives no source a positive
weight is refitted with ``w >= 0`` (NNLS). Mixed signs that follow the consensus stay
allowed: contrasts between devices help (HELP's 2080ti batch 32, the Xeon), and
requiring ``w >= 0`` everywhere cost up to 0.05 Spearman there. (Before, a few noisy
timings that happened to run against the sources fitted every weight negative and
turned the ranking over: Spearman -0.24 and -0.43 on an accelerator holdout with 10
timings.) When no source keeps a positive weight the fit is flat in the sources
(``choice_`` ``'none'``) and ties are ordered by their consensus (:data:`TIE_WEIGHT`).

The rule is applied in every leave-one-out fold as in the full fit, so the LOO error
stays exact: profiling out the residual leaves ``Q = (I + FF'/alpha)^-1`` (``I``
without a residual), leaving out a timing is a rank-one downdate of ``Q``, so each
fold's normal equations in ``[intercept, w]`` come from the full ones, and the
held-out error is ``(Q (t - B th_-i))_i / Q_ii``. Folds that break the rule solve a
small NNLS (:func:`scipy.optimize.nnls`); the others a small linear system.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..paths import SHIPPED_PREDICTORS_DIR
from .features import ArchFeatures, as_indices
from .regressors import _check_y

MODES = ("log", "linear")
#: residual penalties tried (on features standardised over the space), plus infinity
ALPHAS = tuple(float(a) for a in np.logspace(-1, 4, 6))
#: source-weight penalties of the all-sources candidate (standardised source columns)
BETAS = (1.0, 10.0, 100.0)
SINGLE_BETA = 1e-6
#: when no source earns a positive weight, each standardised source gets this share of
#: ``std(t)`` (split between them): it orders ties by the sources' consensus and moves
#: no prediction by more than about 1e-6 of the spread
TIE_WEIGHT = 1e-6
SCALER_SAMPLE = 2048  # seeded members of the space that fix the feature scaling
_SAVED_ARRAYS = ("weights_", "residual_coef_", "feature_mean_", "feature_scale_")
_SAVED_SCALARS = ("mode_", "choice_", "beta_", "alpha_", "loo_error_", "intercept_", "y_min_", "k_")
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


def _nnls_gram(M: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``argmin w'Mw - 2r'w`` over ``w >= 0`` (``M`` positive definite, small)."""
    if len(r) == 1:
        return np.maximum(r / M[0, 0], 0.0)
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:  # numerically semi-definite (a tiny beta): nudge it
        L = np.linalg.cholesky(M + 1e-10 * max(np.trace(M), 1e-300) * np.eye(len(r)))
    return nnls(L.T, solve_triangular(L, r, lower=True))[0]


def _qp(G: np.ndarray, R: np.ndarray, beta: float, V: np.ndarray) -> np.ndarray:
    """Per row n, ``argmin th'(G_n + Pen)th - 2 R_n'th``: ``th[0]`` (the intercept) free
    and unpenalised, ``th[1:]`` (the source weights ``w``) under ``beta``. ``V_n`` is the
    sources' scatter times ones, so ``w'V_n`` is the covariance of the fitted source part
    with the sources' consensus. A fit that ranks against that consensus (``w'V_n <= 0``)
    or gives no source a positive weight is replaced by the non-negative fit (NNLS)."""
    g00 = G[:, 0, 0]
    gw = G[:, 1:, 0]
    M = G[:, 1:, 1:] - gw[:, :, None] * gw[:, None, :] / g00[:, None, None]
    M = M + beta * np.eye(M.shape[-1])
    r = R[:, 1:] - gw * (R[:, 0] / g00)[:, None]
    w = np.linalg.solve(M, r[..., None])[..., 0]
    for n in np.flatnonzero(((w * V).sum(axis=1) <= 0) | ~(w > 0).any(axis=1)):
        w[n] = _nnls_gram(M[n], r[n])
    b = (R[:, 0] - (gw * w).sum(axis=1)) / g00
    return np.column_stack([b, w])


def _systems(Q: np.ndarray, B: np.ndarray, t: np.ndarray):
    """The normal equations of the full fit and of every leave-one-out fit.

    ``Q = (I + FF'/alpha)^-1`` profiles out the residual (``I`` without one); ``B`` is
    ``[1, sources]``. Leaving out row ``i`` removes its row and column from
    ``I + FF'/alpha``, whose inverse is a rank-one downdate of ``Q``, so every fold's
    ``B'Q_S B`` and ``B'Q_S t`` come from the full ones. Returns ``(P, r, G, R, QB, Qt, qd)``.
    """
    QB, Qt, qd = Q @ B, Q @ t, np.diag(Q).copy()
    P, r = B.T @ QB, QB.T @ t
    G = P[None] - QB[:, :, None] * QB[:, None, :] / qd[:, None, None]
    R = r[None] - QB * (Qt / qd)[:, None]
    return P, r, G, R, QB, Qt, qd


def _dof(Q: np.ndarray, B: np.ndarray, th: np.ndarray, beta: float) -> float:
    """Effective degrees of freedom (trace of the hat matrix) of a fit whose positive
    source weights are free: ``I - Q`` of the residual plus the active columns' part."""
    act = [0] + [c for c in range(1, B.shape[1]) if th[c] > 0]
    Ba = B[:, act]
    QB = Q @ Ba
    pen = np.diag([0.0] + [beta] * (len(act) - 1))
    return float(len(Q) - np.trace(Q) + np.trace(np.linalg.solve(Ba.T @ QB + pen, QB.T @ QB)))


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

    No fit turns the sources over (see the module notes).

    After ``fit``: ``mode_``, ``choice_`` (``'all'``, a source name, or ``'none'`` when
    no source earned a positive weight), ``beta_``,
    ``alpha_`` (``inf``: no residual), ``loo_error_`` (mean ``|log(pred / y)|``),
    ``weights_`` (per source, in the mode's units), ``intercept_``, ``residual_coef_``,
    ``feature_mean_`` / ``feature_scale_``, ``source_names_``, ``candidates_`` (the
    best LOO error of each (mode, choice)).
    """

    _FITTED_ATTR = "weights_"  # present once fitted (persist refuses to save before)

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
        fmean = F.mean(axis=0)
        Fc = F - fmean
        alphas = [float(a) for a in (self.alphas if self.alphas is not None else ALPHAS)]
        if len(y) < self.min_residual:
            alphas = []
        alphas = [np.inf] + alphas
        lam, V = np.linalg.eigh(Fc @ Fc.T)
        lam = np.maximum(lam, 0.0)
        Qs = {a: (np.eye(len(y)) if not np.isfinite(a) else (V / (1.0 + lam / a)) @ V.T) for a in alphas}
        err, pick = self._choose(self._score(S, y, alphas, Qs))
        self._set_fit(pick, err, S, y, Fc, fmean, Qs, F.shape[1])
        self.n_features_in_ = sp.n_decisions
        return self

    def _score(self, S: np.ndarray, y: np.ndarray, alphas: list, Qs: dict) -> list:
        """Every (mode, sources, beta, alpha) candidate with its exact leave-one-out error."""
        k = len(y)
        scored = []
        self.candidates_ = {}
        for mode in self.modes:
            t = np.log(y) if mode == "log" else y
            Z = self._z(S, mode)
            zs = Z.std(axis=0)
            zs = np.where(zs > 1e-12, zs, 1.0)
            zmean = Z.mean(axis=0)
            B = np.column_stack([np.ones(k), (Z - zmean) / zs])
            Zc = B[:, 1:]
            # the sources' scatter times ones, of all K timings and of each fold without one
            v_all = Zc.T @ Zc
            for alpha in alphas:
                Q = Qs[alpha]
                P, r, G, R, QB, Qt, qd = _systems(Q, B, t)
                for choice, j, beta in self._candidates(self.source_names_):
                    cols = [0] + ([1 + j] if j is not None else list(range(1, B.shape[1])))
                    sub = np.ix_(range(k), cols, cols)
                    src = [c - 1 for c in cols[1:]]
                    va = v_all[np.ix_(src, src)].sum(axis=1)
                    vf = va[None] - Zc[:, src] * (Zc[:, src].sum(axis=1) * k / (k - 1))[:, None]
                    th = _qp(G[sub], R[:, cols], beta, vf)  # the K leave-one-out fits
                    e = (Qt - (QB[:, cols] * th).sum(axis=1)) / qd
                    pred = t - e
                    if mode == "log":
                        a_err = np.abs(e)
                    else:
                        pred = np.maximum(pred, self.floor * y.min())
                        a_err = np.abs(np.log(pred / y))
                    err = float(np.mean(a_err))
                    key = f"{mode}:{choice}"
                    self.candidates_[key] = min(self.candidates_.get(key, np.inf), err)
                    full = _qp(P[np.ix_(cols, cols)][None], r[cols][None], beta, va[None])[0]
                    df = _dof(Q, B[:, cols], full, beta)
                    scored.append((err, float(np.std(a_err) / np.sqrt(k)), df,
                                   (mode, choice, cols, beta, alpha, full, zs, zmean)))
        return scored

    def _choose(self, scored: list) -> tuple[float, tuple]:
        """(LOO error, candidate): the best, or the simplest within one standard error of it."""
        err, se, _, _ = min(scored, key=lambda r: r[0])
        if self.one_se:
            ok = [r for r in scored if r[0] <= err + se]
            err, _, _, pick = min(ok, key=lambda r: (r[2], r[0]))
        else:
            pick = min(scored, key=lambda r: r[0])[3]
        return err, pick

    def _set_fit(self, pick: tuple, err: float, S: np.ndarray, y: np.ndarray, Fc: np.ndarray,
                 fmean: np.ndarray, Qs: dict, n_features: int) -> None:
        """The chosen candidate's weights, residual and intercept, on all K timings."""
        mode, choice, cols, beta, alpha, full, zs, zmean = pick
        t = np.log(y) if mode == "log" else y
        Zc = (self._z(S, mode) - zmean) / zs
        w_std = np.zeros(len(self.source_names_))
        w_std[[c - 1 for c in cols[1:]]] = full[1:]
        b = float(full[0])
        if np.isfinite(alpha):
            d = Fc.T @ (Qs[alpha] @ (t - b - Zc @ w_std)) / alpha
        else:
            d = np.zeros(n_features)
        if not np.any(w_std != 0):
            # No source earns a positive weight: the fit is flat in the sources. Ties are
            # broken by their consensus with weights far too small to move any value.
            w_std[:] = TIE_WEIGHT * max(float(np.std(t)), 1e-12) / len(w_std)
            choice = "none"
        self.mode_, self.choice_, self.beta_, self.alpha_ = mode, choice, float(beta), float(alpha)
        self.loo_error_ = err
        self.weights_ = w_std / zs
        self.residual_coef_ = d
        self.intercept_ = float(b - zmean @ self.weights_ - fmean @ d)
        self.y_min_ = float(y.min())
        self.k_ = len(y)

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

    # -- saved state (see persist) ------------------------------------------------------------
    def _saved_state(self, folder: Path, *, sources: Mapping[str, dict] | None = None, **_) -> dict:
        """Weights, residual and scaling as JSON-ready numbers, and a reference per source
        (``sources[name]`` when given, else :func:`source_ref`); no side files."""
        refs = {n: (dict(sources[n]) if sources and n in sources else source_ref(n, s))
                for n, s in (self.sources or {}).items()}
        out: dict[str, Any] = {"sources": refs, "source_names": list(self.source_names_)}
        out.update({k: np.asarray(getattr(self, k), dtype=np.float64).tolist() for k in _SAVED_ARRAYS})
        for k in _SAVED_SCALARS:
            v = getattr(self, k)
            out[k] = v if isinstance(v, str) else (None if not np.isfinite(v) else float(v))
        return out

    @classmethod
    def _from_saved(cls, params: dict, fitted: dict, folder: Path, table, meta: dict, *,
                    load_source: Callable[[Mapping[str, Any]], Any], **_) -> "MultiSourceTransfer":
        """The fitted estimator of :meth:`_saved_state`'s record; ``load_source`` loads each
        source from its reference."""
        srcs = {n: load_source(r) for n, r in fitted["sources"].items()}
        est = cls(**params, sources={n: srcs[n] for n in fitted["source_names"]})
        est.features_ = space_features(est.space, tuple(est.parts))[0]
        est.source_names_ = list(fitted["source_names"])
        for k in _SAVED_ARRAYS:
            setattr(est, k, np.asarray(fitted[k], dtype=np.float64))
        for k in _SAVED_SCALARS:
            v = fitted[k]
            setattr(est, k, v if isinstance(v, str) else (float("inf") if v is None else v))
        est.k_ = int(est.k_)
        est.n_features_in_ = est.features_.space_.n_decisions
        return est


def source_ref(name: str, src) -> dict:
    """How a saved MultiSourceTransfer finds source ``name`` again: the ``profile`` and
    ``space`` of a shipped predictor, else the folder it was loaded from (``path_``)."""
    meta, where = getattr(src, "meta_", None), getattr(src, "path_", None)
    if not meta or not where:
        raise ValueError(f"source {name!r} is not a loaded predictor; give its reference "
                         f"(sources={{name: {{'profile': ..., 'space': ...}} or {{'path': ...}}}})")
    if Path(where).resolve().is_relative_to(SHIPPED_PREDICTORS_DIR):
        return {"profile": meta.get("profile"), "space": meta.get("space")}
    return {"path": str(Path(where).resolve()), "space": meta.get("space")}
