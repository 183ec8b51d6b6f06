"""Pricing any network with a fitted predictor, inside its space or not.

A member of the predictor's space is priced by its full model. Any other network
(another resolution or width multiplier, a reference network) is priced from
operators: the predictor's operator table, with an
:class:`~surrogate.predict.oplevel.OpLevelModel` fitted on that table answering the
operators it never measured. A learned predictor's sum is then scaled by the
model's median ``prediction / table sum`` ratio over random members of its space
(what the table misses on whole networks, about +10% on cpu-litert); a calibrated
:class:`TableSum` applies its calibration; :class:`FlopsLinear` uses its MAdds line.
Every :class:`Pricing` says how many operators were measured and how many modelled.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from space.arch import Arch
from space.counting import count_madds
from space.reference import resolve_arch
from space.spaces import get_space

from .features import as_indices
from .oplevel import OpLevelModel, config_from_key
from .optable import OpCost, OpTable

METHODS = ("model", "table", "madds")
SCALE_SAMPLE = 256  # random members behind a learned predictor's table-sum scale
_FALLBACKS: "weakref.WeakKeyDictionary[OpTable, OpLevelModel]" = weakref.WeakKeyDictionary()
_SCALES: "weakref.WeakKeyDictionary[object, float]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Pricing:
    """A network's predicted latency and how it was reached.

    ``method``: ``model`` (a member of the space, the predictor's full model),
    ``table`` (operator table + operator-level model) or ``madds`` (FlopsLinear's line).
    ``measured_ops`` / ``modelled_ops``: non-identity operators whose latency the
    table holds / that a model priced. ``table_ms``: the plain operator sum (``nan``
    without a table). ``ops``: the per-operator breakdown, when asked for.
    """

    arch: str
    ms: float
    method: str
    measured_ops: int
    modelled_ops: int
    table_ms: float
    note: str = ""
    ops: tuple[OpCost, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready fields (``ops`` as a list of dicts)."""
        d = asdict(self)
        d["ops"] = [asdict(c) for c in self.ops]
        return d


def oplevel_fallback(table: OpTable, model: str = "xgb") -> OpLevelModel:
    """An :class:`OpLevelModel` fitted on ``table``'s entries (cached per table)."""
    if model == "xgb" and table in _FALLBACKS:
        return _FALLBACKS[table]
    configs, y = [], []
    for key, ms in table.entries.items():
        try:
            configs.append(config_from_key(key))
        except ValueError:
            continue  # a key of another library version: left out of the fit
        y.append(ms)
    if not configs:
        raise ValueError(f"operator table {table.source or ''} has no entries to fit an "
                         f"operator-level model on")
    fitted = OpLevelModel(model=model).fit(configs, y)
    if model == "xgb":
        _FALLBACKS[table] = fitted
    return fitted


def _as_arch(x) -> Arch:
    if isinstance(x, Arch):
        return x
    if isinstance(x, str):
        return resolve_arch(x)
    raise ValueError(f"expected an Arch, an architecture string or a reference name, "
                     f"got {type(x).__name__}")


def _table_of(est) -> OpTable | None:
    return est.features_.table_


def _scale(est) -> float:
    """Median ``predict / table sum`` over seeded random members (cached per fitted model)."""
    fitted = est.regressor_  # a new object at every fit: a refit never sees a stale scale
    if fitted in _SCALES:
        return _SCALES[fitted]
    sp = est.features_.space_
    idx = sp.sample_indices(np.random.default_rng(0), SCALE_SAMPLE)
    s = float(np.median(est.predict(idx) / est.features_.table_sum(idx)))
    _SCALES[fitted] = s
    return s


def _affine(est, x: float) -> float:
    return float(max(est.coef_ * x + est.intercept_, est.floor_ratio_ * x))


def price_many(est, archs: Iterable, *, breakdown: bool = False) -> list[Pricing]:
    """:class:`Pricing` of each network (an ``Arch``, string or reference name) by ``est``.

    Members of ``est.space`` are predicted together by the full model; the rest from
    operators (see the module docstring). A learned predictor without an operator
    table prices members only (``ValueError`` naming the network otherwise).
    """
    archs = [_as_arch(a) for a in archs]
    if not archs:
        raise ValueError("no architectures given")
    table = _table_of(est)
    sp = get_space(est.space)
    out: list[Pricing | None] = [None] * len(archs)
    members, why = _split(sp, archs)
    if members:
        pred = est.predict(np.array(list(members.values()), dtype=np.int64))
        for (i, idx), ms in zip(members.items(), pred):
            a = sp.to_arch(idx)
            n = len([lc for lc in a.ops() if not lc.is_identity])
            s = table.sum(a, breakdown=breakdown) if table is not None else None
            measured = s.measured if s is not None else 0
            out[i] = Pricing(str(a), float(ms), "model", measured, n - measured,
                             s.ms if s is not None else math.nan,
                             f"member of space {sp.name!r}: {type(est).__name__}",
                             s.ops if s is not None else ())
    for i, reason in why.items():
        out[i] = _price_outside(est, archs[i], table, reason, breakdown)
    return out  # type: ignore[return-value]


def predict_any(est, X) -> np.ndarray:
    """Latency (ms) of each item of ``X`` by ``est``, in order: index vectors of its space,
    ``Arch`` objects, architecture strings or reference names, members or not.

    Members are predicted in one batch (``est.predict`` of an index array); the rest are
    priced from operators exactly as :func:`price_many` prices them.
    """
    sp = est.features_.space_
    items = [X] if isinstance(X, (Arch, str)) else list(X)
    if not items:
        raise ValueError("no architectures given")
    members: dict[int, np.ndarray] = {}
    archs: dict[int, Arch] = {}
    for i, x in enumerate(items):
        if isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.ndim == 1:
            members[i] = as_indices(sp, x)[0]
        elif isinstance(x, (Arch, str)):
            archs[i] = _as_arch(x)
        else:
            raise ValueError(f"item {i}: expected an Arch, an architecture string, a reference name "
                             f"or an index vector, got {type(x).__name__}")
    found, why = _split(sp, archs)
    members.update(found)
    out = np.empty(len(items))
    if members:
        out[list(members)] = est.predict(np.array(list(members.values()), dtype=np.int64))
    table = _table_of(est) if why else None
    for i, reason in why.items():
        out[i] = _price_outside(est, archs[i], table, reason, False).ms
    return out


def _split(sp, archs) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Members of space ``sp`` among ``archs`` (a list or position -> Arch): position -> index
    vector; the rest: position -> why it is not a member."""
    members, why = {}, {}
    for i, a in (archs.items() if isinstance(archs, dict) else enumerate(archs)):
        try:
            members[i] = sp.from_arch(a)
        except ValueError as exc:
            why[i] = str(exc)
    return members, why


def _price_outside(est, a: Arch, table: OpTable | None, reason: str, breakdown: bool) -> Pricing:
    n = len([lc for lc in a.ops() if not lc.is_identity])
    kind = type(est).__name__
    outside = f"not in space {est.space!r} ({reason.split(': ', 1)[-1]})"
    if kind == "FlopsLinear":
        ms = _affine(est, float(count_madds(a)))
        return Pricing(str(a), ms, "madds", 0, n, math.nan, f"{outside}: FlopsLinear's MAdds line")
    if table is None:
        raise ValueError(f"{kind} for space {est.space!r} has no operator table, so it prices only "
                         f"members of its space; {a.name or str(a)} is {outside}")
    s = table.with_fallback(oplevel_fallback(table).predict_op).sum(a, breakdown=breakdown)
    if kind == "TableSum":
        ms = _affine(est, s.ms)
        how = "operator table + operator-level model" + (", calibrated" if est.calibrate else "")
    else:
        k = _scale(est)
        ms = s.ms * k
        how = (f"operator table + operator-level model, x{k:.3f} (the model's median ratio to the "
               f"table sum on {SCALE_SAMPLE} members)")
    return Pricing(str(a), float(ms), "table", s.measured, s.modelled, s.ms, f"{outside}: {how}", s.ops)
