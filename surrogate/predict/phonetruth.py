"""The published phone timings as evaluation groups, and every method scored on them.

A *group* is one device setting from one source (``source/device/cores/dtype``): the
rows of :func:`~surrogate.datasets.load_published_phones` that the registry can
build, one per network (the median when a source repeats it). Calibrations never mix
sources. :func:`evaluate_group` scores one group by leave-one-out and by K random
timings (median over draws) for the cross-device predictor and the baselines
(:data:`BASELINES`), all in one call so they share the data and the draws. Its prior is
learned on the *other* devices (leave-one-device-out) and never on a scored network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

from space.counting import count_madds
from space.reference import resolve_arch

from .crossdevice import SCHEMES, CrossDeviceLatency, CrossDevicePrior, host_features
from .optable import OpTable

UNSTATED = "unstated"
#: the baselines scored beside the cross-device predictor
BASELINES = ("flops-loglin", "ratio", "loglin-host", "published-pixel", "roofline")
CHOSEN = "crossdevice"


@dataclass
class Group:
    """One device setting from one source: networks, latencies and host features."""

    key: str
    device: str
    dtype: str
    names: list[str]
    arch: list[str]
    y: np.ndarray
    F: dict[str, np.ndarray] = field(default_factory=dict)  # scheme -> host_features
    madds: np.ndarray | None = None
    host_e2e: np.ndarray | None = None  # measured end-to-end host ms (nan where not timed)
    weak: int = 0

    @property
    def n(self) -> int:
        return len(self.y)


def truth_groups(df, *, min_rows: int = 8, include_gpu: bool = False) -> dict[str, "Group"]:
    """Groups of ``df`` (from ``load_published_phones``) with at least ``min_rows`` networks."""
    d = df[df["arch"].notna()].copy()
    if not include_gpu:
        d = d[d["cores"].fillna("") != "gpu"]
    for c in ("cores", "dtype"):
        d[c] = d[c].fillna(UNSTATED)
    out = {}
    for (src, dev, cores, dt), g in d.groupby(["source", "device", "cores", "dtype"], sort=True):
        agg = g.groupby("arch", sort=False).agg(latency_ms=("latency_ms", "median"),
                                                arch_name=("arch_name", "first"),
                                                weak=("weak", lambda w: any(bool(x) for x in w)))
        if len(agg) < min_rows:
            continue
        key = f"{src}/{dev}/{cores}/{dt}"
        out[key] = Group(key, dev, dt, list(agg["arch_name"]), list(agg.index),
                         agg["latency_ms"].to_numpy(dtype=np.float64), weak=int(agg["weak"].sum()))
    return out


def add_features(groups: Mapping[str, Group], table: OpTable, schemes: Sequence[str] = ("kernel",),
                 host_e2e: Mapping[str, float] | None = None) -> None:
    """Fill each group's host features per scheme, MAdds and measured host ms (in place)."""
    for g in groups.values():
        archs = [resolve_arch(n) for n in g.names]
        for s in schemes:
            g.F[s] = host_features(archs, table, s)
        g.madds = np.array([count_madds(a) for a in archs], dtype=np.float64)
        e2e = host_e2e or {}
        g.host_e2e = np.array([e2e.get(a, math.nan) for a in g.arch], dtype=np.float64)


def _loglin(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    lx, ly = np.log(x), np.log(y)
    if len(x) < 2 or np.ptp(lx) == 0:
        b = float(np.mean(ly - lx))
        return lambda z: np.exp(np.log(z) + b)
    a, b = np.polyfit(lx, ly, 1)
    return lambda z: np.exp(a * np.log(z) + b)


def _roofline(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    theta, _ = nnls(A / y[:, None], np.ones(len(y)))
    return theta


def _nclass(scheme: str) -> int:
    return len(SCHEMES[scheme])


def method_fitter(name: str, g: Group, *, prior_for: Callable[[set], CrossDevicePrior | None] | None = None,
                  scheme: str = "kernel", mode: str = "auto"):
    """``fit(train_idx, test_idx) -> predictions`` of one method on group ``g``.

    ``prior_for(excluded_archs)``: the prior from the other devices' rows without the
    networks being scored, so no source ever saw a test network.
    """
    F = g.F[scheme]
    host_sum = F[:, :_nclass(scheme)].sum(axis=1)
    if name == CHOSEN or name.startswith(CHOSEN + "["):
        def fit(tr, te):
            pr = prior_for({g.arch[i] for i in te}) if prior_for else None
            est = CrossDeviceLatency(prior=pr, scheme=scheme, mode=mode if pr is not None else "factors")
            return est.fit(F[tr], g.y[tr], features=True).predict(F[te], features=True)
        return fit
    if name == "flops-loglin":
        return lambda tr, te: _loglin(g.madds[tr], g.y[tr])(g.madds[te])
    if name == "ratio":
        return lambda tr, te: float(np.median(g.y[tr] / host_sum[tr])) * host_sum[te]
    if name == "loglin-host":
        return lambda tr, te: _loglin(host_sum[tr], g.y[tr])(host_sum[te])
    if name == "published-pixel":  # the old bench: log-linear on measured end-to-end host ms
        return lambda tr, te: _loglin(g.host_e2e[tr], g.y[tr])(g.host_e2e[te])
    if name == "roofline":
        A = np.column_stack([g.madds / 1e6, F[:, _nclass(scheme)], np.ones(g.n)])
        return lambda tr, te: A[te] @ _roofline(A[tr], g.y[tr])
    raise ValueError(f"unknown method {name!r}; expected {CHOSEN} or one of {', '.join(BASELINES)}")


def score(fit, y: np.ndarray, *, ks: Sequence[int] = (3, 5), draws: int = 20, seed: int = 0) -> dict:
    """Leave-one-out MAPE / largest error / Spearman, and median K-shot MAPE per K.

    A K-shot draw takes its K timings from a random half of the networks (at least K)
    and is scored on the other half, so priors built without the scored half stay fair.
    """
    n = len(y)
    loo = np.empty(n)
    for i in range(n):
        loo[i] = fit(np.flatnonzero(np.arange(n) != i), np.array([i]))[0]
    rel = np.abs(loo / y - 1)
    out = {"n": n, "loo_mape": float(rel.mean()), "loo_max": float(rel.max()),
           "spearman": float(spearmanr(y, loo).statistic) if n > 2 else math.nan}
    rng = np.random.default_rng(seed)
    for k in ks:
        if n <= k + 1:
            out[f"k{k}_mape"] = math.nan
            continue
        errs = []
        for _ in range(draws):
            perm = rng.permutation(n)
            pool, rest = perm[:max(k, n // 2)], perm[max(k, n // 2):]
            pick = rng.choice(pool, k, replace=False)
            errs.append(float(np.mean(np.abs(fit(pick, rest) / y[rest] - 1))))
        out[f"k{k}_mape"] = float(np.median(errs))
    out["loo_pred"] = loo.tolist()
    return out


def lodo_prior(groups: Mapping[str, Group], target: Group, scheme: str = "kernel",
               lam: float | str = "auto", exclude: set | frozenset = frozenset()) -> CrossDevicePrior | None:
    """A prior learned on the other devices' groups at the target's dtype (None: there are none),
    without the networks in ``exclude`` (architecture strings)."""
    rest = [g for g in groups.values() if g.device != target.device and g.dtype == target.dtype]
    fits = []
    for g in rest:
        keep = np.array([a not in exclude for a in g.arch])
        if keep.sum() >= 3:
            fits.append((g.device, g.F[scheme][keep], g.y[keep]))
    if not fits:
        return None
    return CrossDevicePrior(scheme=scheme, lam=lam, devices=[d for d, _, _ in fits]).fit(
        [(F, y) for _, F, y in fits])


def evaluate_group(groups: Mapping[str, Group], key: str, *, schemes: Sequence[str] = ("kernel",),
                   ks: Sequence[int] = (3, 5), draws: int = 20, seed: int = 0) -> dict[str, dict]:
    """Every method's :func:`score` on group ``key``; priors leave out its device and test networks."""
    g = groups[key]
    res: dict[str, dict] = {}
    variants = [(CHOSEN, schemes[0], "auto"), (f"{CHOSEN}[factors]", schemes[0], "factors"),
                *[(f"{CHOSEN}[{s}]", s, "auto") for s in schemes[1:]]]
    for name, s, mode in variants:
        full = lodo_prior(groups, g, s)
        lam = 1.0 if full is None else float(full.lam_)
        cache: dict[frozenset, CrossDevicePrior | None] = {}

        def prior_for(ex, s=s, lam=lam, cache=cache):
            key_ = frozenset(ex)
            if key_ not in cache:
                cache[key_] = lodo_prior(groups, g, s, lam, key_)
            return cache[key_]

        res[name] = score(method_fitter(CHOSEN, g, prior_for=prior_for, scheme=s, mode=mode), g.y,
                          ks=ks, draws=draws, seed=seed)
        res[name]["prior_lam"] = lam
    for b in BASELINES:
        if b == "published-pixel" and not np.all(np.isfinite(g.host_e2e)):
            continue
        res[b] = score(method_fitter(b, g, scheme=schemes[0]), g.y, ks=ks, draws=draws, seed=seed)
    return res


def truth_prior(groups: Mapping[str, Any], dtype: str = "fp32", scheme: str = "kernel",
                table: OpTable | None = None) -> tuple["CrossDevicePrior", dict]:
    """A prior fitted on every group of ``dtype`` (:mod:`.phonetruth` groups), with provenance."""
    use = [g for g in groups.values() if g.dtype == dtype]
    if not use:
        raise ValueError(f"no published groups at dtype {dtype!r}")
    pr = CrossDevicePrior(scheme=scheme, devices=[g.device for g in use]).fit(
        [(g.F[scheme], g.y) for g in use])
    prov = {"groups": [g.key for g in use], "rows": int(sum(g.n for g in use)),
            "host_table": None if table is None else {"source": Path(table.source or "").name,
                                                      "sha256": table.sha256, "entries": len(table)},
            "data": "reference/published_latency.csv (figures quoted from the works named per row) "
                    "and mobile-ml-benchmark tflite_cnn_e2e.csv (MIT, github.com/qed-usc/"
                    "mobile-ml-benchmark@40ba833)"}
    return pr, prov


__all__ = ["BASELINES", "CHOSEN", "Group", "add_features", "evaluate_group", "lodo_prior",
           "method_fitter", "score", "truth_groups", "truth_prior"]
