"""A phone's latency from this host's operator times and a handful of the phone's timings.

A network's latency on a device is modelled as a non-negative sum over its operators,
measured on *this* host (:class:`~surrogate.predict.optable.OpTable`):

``ms = sum_c theta_c * H_c + theta_mem * MB + theta_ops * n_ops + theta_one``

``H_c`` is the host time of the network's operators of class ``c`` (stem, head, dense
convolutions, depthwise blocks by kernel and SE; see :data:`SCHEMES`), ``MB`` the
activation traffic in MB (small, memory-bound layers), ``n_ops`` the operator count
(per-operator dispatch). Operator classes cost differently on an ARM core than on an
x86 host (a 7x7 depthwise, a dense 3x3, SE), which one ratio cannot express.

A *prior* (:class:`CrossDevicePrior`) holds one such factor vector per device that
has data. Two fits of the K timings of a new device stand on it:

- ``consensus``: ``log ms = a log z + b``, ``z`` the geometric mean of the prior
  devices' predictions (``a = 1`` below 3 timings). Two numbers, so K = 3-5 works.
- ``factors``: the prior devices' median shape put on the device's scale, then each
  factor moved from it as far as the timings support (ridge penalty ``lam`` on the
  relative change, ``theta >= 0``, a small NNLS).

``mode="auto"`` takes ``consensus`` below :data:`AUTO_LOO_MIN` timings, else the lower
leave-one-out error of the two (relative errors). The method was chosen over log-linear,
roofline and FLOPs fits by leave-one-device-out (``bench/published_phones.py``). A
``factors`` fit is also the device's operator table (``device_op_table``); ``forward``
gives either fit in torch, differentiable in the host features.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin

from space.arch import Arch, LayerConfig

from ..paths import DEFAULT_PROFILE
from .optable import OpTable

#: operator-class schemes: the classes of each, in column order
SCHEMES: dict[str, tuple[str, ...]] = {
    "one": ("all",),
    "kernel": ("stem", "head", "dense", "dw3", "dw5", "dw7"),
    "kernel-se": ("stem", "head", "dense", "dw3", "dw5", "dw7", "se"),
    "kernel-act": ("stem", "head", "dense", "dw3", "dw5", "dw7", "se", "hswish"),
}
EXTRA = ("mem_mb", "n_ops", "one")
#: ridge penalties tried on the relative change of each factor from the prior
LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
AUTO_LOO_MIN = 8  # below this many timings "auto" takes the prior's penalty
NEAREST = 0.25  # share of prior devices in a consensus: those whose shape fits the timings best
SHARE_LOO_MIN = 4  # from this many timings the nearest share competes with all devices by LOO
SLOPE_MIN = 3  # below this many timings a consensus fit is one ratio (slope 1)
FORMAT = "mnas-crossdevice/1"
#: shipped priors: ``<profile>_phones-<dtype>.json`` (learned on the published phone timings)
SHIPPED_PRIORS = Path(__file__).resolve().parents[1] / "data" / "priors"


def op_class(lc: LayerConfig, scheme: str) -> str:
    """The class of one operator under ``scheme`` (see :data:`SCHEMES`)."""
    if scheme == "one":
        return "all"
    if lc.op in ("stem", "head"):
        return lc.op
    if lc.op in ("fused", "fusedp", "conv"):
        return "dense"
    if scheme in ("kernel-se", "kernel-act") and lc.se:
        return "se"
    if scheme == "kernel-act" and lc.act not in ("relu", "relu6"):
        return "hswish"
    k = min(max(lc.kernel, 3), 7)
    return f"dw{k if k in (3, 5, 7) else 5}"


def _mem_mb(lc: LayerConfig) -> float:
    out_hw = lc.out_h * lc.out_w
    mid = lc.mid_ch if lc.op not in ("stem", "head") else 0
    return 4e-6 * (lc.h * lc.w * lc.in_ch + out_hw * lc.out_ch + (lc.h * lc.w + out_hw) * mid)


def host_features(archs: Sequence[Arch], table: OpTable, scheme: str = "kernel") -> np.ndarray:
    """``[n, len(classes) + 3]``: host ms per operator class, MB moved, operators, 1.

    Every operator must be in ``table`` or answered by its fallback; a missing one is a
    ``ValueError`` naming the network and how many operators it lacks.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    cls = {c: i for i, c in enumerate(SCHEMES[scheme])}
    nc = len(cls)
    out = np.zeros((len(archs), nc + len(EXTRA)))
    for i, a in enumerate(archs):
        missing = 0
        for lc in a.ops():
            if lc.is_identity:
                continue
            ms = table(lc)
            if not np.isfinite(ms):
                missing += 1
                continue
            out[i, cls[op_class(lc, scheme)]] += ms
            out[i, nc] += _mem_mb(lc)
            out[i, nc + 1] += 1
        if missing:
            raise ValueError(f"{a.name or a}: {missing} operator(s) are not in the host operator "
                             f"table {table.source or ''}; measure them (mnas measure ops "
                             f"--reference) or give the table a fallback")
        out[i, nc + 2] = 1.0
    return out


def _scale(p: np.ndarray, y: np.ndarray) -> float:
    """The ratio ``s`` minimising ``sum (s p / y - 1)^2``."""
    q = p / y
    d = float(q @ q)
    return float(q.sum() / d) if d > 0 else 1.0


def _solve(F: np.ndarray, y: np.ndarray, prior: np.ndarray, lam: float) -> np.ndarray:
    """Non-negative factors: relative error + ``lam`` x relative change from the scaled prior."""
    p0 = F @ prior
    s = _scale(p0, y)
    target = s * prior
    col = F.mean(axis=0)
    # a factor's reference size: its prior value, or what would let it explain the mean alone
    ref = np.where(target > 0, target, np.where(col > 0, p0.mean() * s / np.maximum(col, 1e-12), 1.0))
    A = np.vstack([F / y[:, None], np.sqrt(lam) * np.diag(1.0 / ref)])
    b = np.concatenate([np.ones(len(y)), np.sqrt(lam) * target / ref])
    theta, _ = nnls(A, b, maxiter=50 * A.shape[1])
    return theta


def _loo_error(F: np.ndarray, y: np.ndarray, prior: np.ndarray, lam: float) -> float:
    errs = []
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        th = _solve(F[m], y[m], prior, lam)
        errs.append(abs(F[i] @ th / y[i] - 1.0))
    return float(np.mean(errs))


def uniform_prior(scheme: str) -> np.ndarray:
    """Every operator class at factor 1, no memory, operator or fixed term: one ratio."""
    return np.concatenate([np.ones(len(SCHEMES[scheme])), np.zeros(len(EXTRA))])


MODES = ("auto", "consensus", "factors")


def _consensus(F: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Geometric mean over prior devices of their predictions (``sources``: [m, p])."""
    return np.exp(np.mean(np.log(np.maximum(F @ sources.T, 1e-9)), axis=1))


def _fit_loglin(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    lz, ly = np.log(z), np.log(y)
    if len(y) < SLOPE_MIN or np.ptp(lz) < 1e-9:
        return 1.0, float(np.mean(ly - lz))
    a, b = np.polyfit(lz, ly, 1)
    if a <= 0:  # never turn the sources over
        return 1.0, float(np.mean(ly - lz))
    return float(a), float(b)


def _nearest(F: np.ndarray, y: np.ndarray, sources: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of prior devices whose shape (up to one ratio) best fits the timings."""
    m = max(1, int(round(share * len(sources))))
    if m >= len(sources) or len(y) < 2:
        return sources
    r = np.log(y)[:, None] - np.log(np.maximum(F @ sources.T, 1e-9))
    err = np.abs(r - r.mean(axis=0)).mean(axis=0)
    return sources[np.argsort(err, kind="stable")[:m]]


def _loo_consensus(F: np.ndarray, y: np.ndarray, sources: np.ndarray, share: float) -> float:
    errs = []
    for i in range(len(y)):
        m = np.arange(len(y)) != i
        z = _consensus(F, _nearest(F[m], y[m], sources, share))
        a, b = _fit_loglin(z[m], y[m])
        errs.append(abs(np.exp(a * np.log(z[i]) + b) / y[i] - 1.0))
    return float(np.mean(errs))


class CrossDeviceLatency(RegressorMixin, BaseEstimator):
    """Latency on a device (ms) from this host's operator times and K of the device's timings.

    ``table``: the host's :class:`OpTable` (every operator of the networks, or a
    fallback). ``prior``: a fitted :class:`CrossDevicePrior`, a mapping from its
    :meth:`~CrossDevicePrior.to_dict`, or None (one ratio as prior; ``scheme`` then
    chooses the classes, and only ``factors`` is possible). ``mode``: see the module
    docstring. ``lam``: shrinkage of ``factors`` toward the prior, or ``"auto"``.
    ``fit``/``predict`` take :class:`~space.arch.Arch` objects (or precomputed
    :func:`host_features` rows with ``features=True``).
    """

    def __init__(self, table: OpTable | None = None, prior: Any = None, scheme: str = "kernel",
                 mode: str = "auto", lam: float | str = "auto", nearest: float = NEAREST):
        self.table, self.prior, self.scheme, self.mode, self.lam = table, prior, scheme, mode, lam
        self.nearest = nearest

    def _prior(self) -> "CrossDevicePrior":
        if self.prior is None:
            pr = CrossDevicePrior(scheme=self.scheme, lam=1.0)
            pr.theta_, pr.lam_ = uniform_prior(self.scheme), 1.0
            pr.sources_, pr.n_groups_ = np.zeros((0, len(pr.theta_))), 0
            return pr
        return self.prior if isinstance(self.prior, CrossDevicePrior) else CrossDevicePrior.from_dict(self.prior)

    def _features(self, X, features: bool, scheme: str) -> np.ndarray:
        if features:
            F = np.asarray(X, dtype=np.float64)
            p = len(SCHEMES[scheme]) + len(EXTRA)
            if F.ndim != 2 or F.shape[1] != p:
                raise ValueError(f"features: expected rows of {p} columns (host_features, scheme "
                                 f"{scheme!r}), got shape {F.shape}")
            return F
        if self.table is None:
            raise ValueError("CrossDeviceLatency needs the host operator table (table=...)")
        return host_features(list(X), self.table, scheme)

    def fit(self, X, y, *, features: bool = False) -> "CrossDeviceLatency":
        """Fit on networks ``X`` and their latencies ``y`` (ms) on the target device."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.prior is None and self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.lam != "auto" and not isinstance(self.lam, (int, float)):
            raise ValueError(f"lam must be a number > 0 or 'auto', got {self.lam!r}")
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.size < 1 or not np.all(np.isfinite(y)) or (y <= 0).any():
            raise ValueError("latencies must be finite, positive ms (at least one)")
        pr = self._prior()
        F = self._features(X, features, pr.scheme)
        if F.shape[0] != y.size:
            raise ValueError(f"{F.shape[0]} networks but {y.size} latencies")
        has_src = len(pr.sources_) > 0
        if self.mode == "consensus" and not has_src:
            raise ValueError("mode 'consensus' needs a prior with devices (prior=...)")
        cands: list[tuple[str, float]] = []  # (mode, lam or nearest share)
        if self.mode in ("consensus", "auto") and has_src:
            shares = (self.nearest, 1.0) if y.size >= SHARE_LOO_MIN and self.nearest < 1 else (self.nearest,)
            cands += [("consensus", sh) for sh in shares]
        if self.mode == "factors" or (self.mode == "auto" and (not has_src or y.size >= AUTO_LOO_MIN)):
            if self.lam != "auto":
                lam = float(self.lam)
                if not lam > 0:
                    raise ValueError(f"lam must be > 0 or 'auto', got {self.lam!r}")
                grid = (lam,)
            else:
                grid = LAMBDAS if y.size >= AUTO_LOO_MIN else (pr.lam_,)
            cands += [("factors", v) for v in grid]
        scored = len(cands) > 1 or y.size >= AUTO_LOO_MIN  # leave-one-out: to choose, or to report
        err, mode, lam = min(((_loo_consensus(F, y, pr.sources_, v) if m == "consensus"
                               else _loo_error(F, y, pr.theta_, v)) if scored else math.nan, m, v)
                             for m, v in cands)
        self.mode_, self.scheme_ = mode, pr.scheme
        self.lam_ = float(lam) if mode == "factors" else float(pr.lam_)
        self.share_ = float(lam) if mode == "consensus" else 1.0
        sources = _nearest(F, y, pr.sources_, self.share_) if mode == "consensus" else pr.sources_
        self.prior_theta_, self.sources_ = pr.theta_, sources
        self.loo_error_ = float(err) if y.size >= AUTO_LOO_MIN else float("nan")
        if mode == "consensus":
            self.a_, self.b_ = _fit_loglin(_consensus(F, sources), y)
            self.coef_ = np.zeros_like(pr.theta_)
        else:
            self.a_, self.b_ = 1.0, 0.0
            self.coef_ = _solve(F, y, pr.theta_, lam)
        self.n_fit_ = int(y.size)
        self.columns_ = (*SCHEMES[pr.scheme], *EXTRA)
        return self

    def predict(self, X, *, features: bool = False) -> np.ndarray:
        """Predicted ms on the device."""
        if not hasattr(self, "coef_"):
            raise ValueError("this CrossDeviceLatency is not fitted")
        F = self._features(X, features, self.scheme_)
        if self.mode_ == "consensus":
            return np.exp(self.a_ * np.log(_consensus(F, self.sources_)) + self.b_)
        return F @ self.coef_

    def forward(self, F):
        """The prediction in torch from host features ``F`` ([n, p] tensor): differentiable."""
        import torch

        if self.mode_ == "consensus":
            S = torch.as_tensor(self.sources_, dtype=F.dtype)
            lz = torch.log(torch.clamp(F @ S.T, min=1e-9)).mean(dim=1)
            return torch.exp(self.a_ * lz + self.b_)
        return F @ torch.as_tensor(self.coef_, dtype=F.dtype)

    def factors(self) -> dict[str, float]:
        """The fit's effective device ms per host ms, per column (``consensus``: at the median)."""
        if self.mode_ == "factors":
            return dict(zip(self.columns_, map(float, self.coef_)))
        med = np.median(self.sources_, axis=0) * math.exp(self.b_)
        return dict(zip(self.columns_, map(float, med)))

    def device_op_table(self) -> tuple[OpTable, float]:
        """(an :class:`OpTable` of device ms per host-table operator, the fixed ms per network).

        Only a ``factors`` fit is a sum over operators; a ``consensus`` fit refuses.
        """
        if self.mode_ != "factors":
            raise ValueError("a 'consensus' fit is not a sum over operators; refit with mode='factors'")
        if self.table is None:
            raise ValueError("no host operator table to map")
        from .oplevel import config_from_key

        nc = len(SCHEMES[self.scheme_])
        idx = {c: i for i, c in enumerate(SCHEMES[self.scheme_])}
        out = {}
        for key, ms in self.table.entries.items():
            try:
                lc = config_from_key(key)
            except ValueError:
                continue
            out[key] = (self.coef_[idx[op_class(lc, self.scheme_)]] * ms
                        + self.coef_[nc] * _mem_mb(lc) + self.coef_[nc + 1])
        return OpTable(out, profile=self.table.profile, space=self.table.space,
                       source=f"device ms from {self.table.source}"), float(self.coef_[nc + 2])

    def state(self) -> dict:
        """Everything :meth:`from_state` needs (the host table is referenced, not copied)."""
        return {"format": FORMAT, "class": type(self).__name__, "mode": self.mode_,
                "scheme": self.scheme_, "lam": self.lam_, "coef": self.coef_.tolist(),
                "a": self.a_, "b": self.b_, "sources": self.sources_.tolist(),
                "prior_theta": self.prior_theta_.tolist(), "n_fit": self.n_fit_,
                "loo_error": None if math.isnan(self.loo_error_) else self.loo_error_,
                "columns": list(self.columns_)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], table: OpTable | None = None) -> "CrossDeviceLatency":
        """A fitted estimator from :meth:`state` (``ValueError`` names what is wrong)."""
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            got = state.get("format") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a cross-device predictor state (format {got!r}, expected {FORMAT!r})")
        try:
            est = cls(table=table, scheme=state["scheme"], mode=state["mode"], lam=float(state["lam"]))
            est.mode_, est.scheme_, est.lam_ = state["mode"], state["scheme"], float(state["lam"])
            est.coef_ = np.asarray(state["coef"], dtype=np.float64)
            est.a_, est.b_ = float(state["a"]), float(state["b"])
            p = len(SCHEMES[est.scheme_]) + len(EXTRA)
            est.sources_ = np.asarray(state["sources"], dtype=np.float64).reshape(-1, p)
            est.prior_theta_ = np.asarray(state["prior_theta"], dtype=np.float64)
            est.n_fit_ = int(state["n_fit"])
            est.loo_error_ = float("nan") if state.get("loo_error") is None else float(state["loo_error"])
            est.columns_ = tuple(state["columns"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cross-device predictor state is damaged: {exc}") from None
        if (len(est.coef_) != p or est.mode_ not in MODES[1:] or len(est.prior_theta_) != p
                or (est.mode_ == "consensus" and len(est.sources_) == 0)):
            raise ValueError(f"cross-device state has {len(est.coef_)} coefficients for scheme "
                             f"{est.scheme_!r} and mode {est.mode_!r}")
        return est


    def save(self, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Folder ``path`` (replaced whole): ``meta.json`` (the fit and ``extra``) and
        ``ops.json`` (the host operator times it stands on)."""
        from ..atomic import write_folder_atomic

        if not hasattr(self, "coef_") or self.table is None:
            raise ValueError("save needs a fitted CrossDeviceLatency with its host operator table")
        t = self.table
        meta = {"format": FORMAT, "class": type(self).__name__, "state": self.state(),
                "table": {"sha256": t.sha256, "source": Path(t.source).name if t.source else None,
                          "profile": t.profile, "entries": len(t)}, **dict(extra or {})}
        return write_folder_atomic(path, {"meta.json": json.dumps(meta, indent=1) + "\n",
                                          "ops.json": json.dumps(t.entries, sort_keys=True)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CrossDeviceLatency":
        """A predictor saved by :meth:`save` (``ValueError`` names the file and what is wrong)."""
        path = Path(path)
        docs = {}
        for name in ("meta.json", "ops.json"):
            try:
                docs[name] = json.loads((path / name).read_text())
            except FileNotFoundError:
                raise FileNotFoundError(f"{path / name}: missing (not a saved phone predictor)") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path / name}: not valid JSON ({exc})") from None
        meta, ops = docs["meta.json"], docs["ops.json"]
        if not isinstance(meta, dict) or meta.get("class") != cls.__name__ or not isinstance(ops, dict):
            raise ValueError(f"{path}: not a saved {cls.__name__} (meta.json class / ops.json)")
        t = meta.get("table") or {}
        table = OpTable({str(k): float(v) for k, v in ops.items()}, profile=t.get("profile"),
                        space="reference", sha256=t.get("sha256"), source=str(path / "ops.json"))
        est = cls.from_state(meta.get("state") or {}, table)
        est.meta_ = meta
        return est


class CrossDevicePrior(BaseEstimator):
    """Factor vectors of the devices that have data, and their median shape.

    ``fit(groups)`` takes ``[(F, y), ...]``: :func:`host_features` rows and latencies of
    each training device (or device setting). Each group's factors are fitted (shrunk
    toward one ratio by ``fit_lam``) and kept in ``sources_``; ``theta_`` is their median
    after dividing each by its one ratio. ``lam`` is the shrinkage ``factors`` fits get
    at small K (``"auto"``: chosen by leave-one-device-out at K = ``k``).
    """

    def __init__(self, scheme: str = "kernel", lam: float | str = "auto", fit_lam: float = 0.1,
                 devices: Sequence[str] | None = None, k: int = 5, draws: int = 10, seed: int = 0):
        self.scheme, self.lam, self.fit_lam, self.devices = scheme, lam, fit_lam, devices
        self.k, self.draws, self.seed = k, draws, seed

    def _fits(self, groups) -> tuple[np.ndarray, np.ndarray]:
        u = uniform_prior(self.scheme)
        thetas = np.asarray([_solve(F, y, u, self.fit_lam) for F, y in groups])
        scales = np.asarray([_scale(F @ u, y) for F, y in groups])
        return thetas, np.median(thetas / scales[:, None], axis=0)

    def fit(self, groups: Sequence[tuple[np.ndarray, np.ndarray]]) -> "CrossDevicePrior":
        """Learn the devices' factors (and, for ``lam="auto"``, the small-K penalty)."""
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        groups = [(np.asarray(F, float), np.asarray(y, float)) for F, y in groups]
        if len(groups) < 1:
            raise ValueError("a prior needs at least one device's timings")
        self.sources_, self.theta_ = self._fits(groups)
        devs = list(self.devices) if self.devices is not None else [str(i) for i in range(len(groups))]
        if self.lam == "auto" and len(set(devs)) > 1:
            self.lam_ = min(LAMBDAS, key=lambda v: self._lodo(groups, devs, v))
        else:
            self.lam_ = 1.0 if self.lam == "auto" else float(self.lam)
        self.n_groups_ = len(groups)
        return self

    def _lodo(self, groups, devs, lam: float) -> float:
        rng = np.random.default_rng(self.seed)
        errs = []
        for d in sorted(set(devs)):
            rest = [g for g, e in zip(groups, devs) if e != d]
            if not rest:
                continue
            shape = self._fits(rest)[1]
            for (F, y), e in zip(groups, devs):
                if e != d or len(y) <= self.k:
                    continue
                for _ in range(self.draws):
                    pick = rng.choice(len(y), self.k, replace=False)
                    th = _solve(F[pick], y[pick], shape, lam)
                    m = np.ones(len(y), bool)
                    m[pick] = False
                    errs.append(np.mean(np.abs(F[m] @ th / y[m] - 1)))
        return float(np.median(errs)) if errs else float("inf")

    def consensus(self, F: np.ndarray) -> np.ndarray:
        """Geometric mean of the prior devices' predictions for host features ``F``
        (the plain host sum when the prior has no devices)."""
        if len(self.sources_):
            return _consensus(F, self.sources_)
        return F[:, :len(SCHEMES[self.scheme])].sum(axis=1)

    def to_dict(self) -> dict:
        """JSON-ready prior (scheme, median shape, penalty, each device's factors)."""
        return {"format": FORMAT, "scheme": self.scheme, "theta": list(map(float, self.theta_)),
                "lam": float(self.lam_), "columns": [*SCHEMES[self.scheme], *EXTRA],
                "sources": self.sources_.tolist(), "n_groups": int(self.n_groups_)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CrossDevicePrior":
        """A fitted prior from :meth:`to_dict` (``ValueError`` names what is wrong)."""
        scheme = d.get("scheme") if isinstance(d, Mapping) else None
        p = len(SCHEMES.get(scheme, ())) + len(EXTRA)
        if scheme not in SCHEMES or len(d.get("theta", ())) != p:
            raise ValueError(f"not a cross-device prior (scheme {scheme!r}, "
                             f"{len(d.get('theta', ())) if isinstance(d, Mapping) else 0} factors)")
        try:
            pr = cls(scheme=scheme, lam=float(d["lam"]))
            pr.theta_, pr.lam_ = np.asarray(d["theta"], dtype=np.float64), float(d["lam"])
            pr.sources_ = np.asarray(d.get("sources", []), dtype=np.float64).reshape(-1, p)
            pr.n_groups_ = int(d.get("n_groups", len(pr.sources_)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"cross-device prior is damaged: {exc!r}") from None
        return pr

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CrossDevicePrior":
        """Read a prior JSON file."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def shipped_prior(profile: str = DEFAULT_PROFILE, dtype: str = "fp32") -> "CrossDevicePrior":
    """The prior shipped for ``profile``'s host tables and phones at ``dtype``."""
    path = SHIPPED_PRIORS / f"{profile}_phones-{dtype}.json"
    if not path.is_file():
        known = sorted(p.stem for p in SHIPPED_PRIORS.glob("*.json"))
        raise ValueError(f"no shipped phone prior for profile {profile!r} and dtype {dtype!r}; "
                         f"shipped: {', '.join(known) or 'none'}")
    return CrossDevicePrior.load(path)
