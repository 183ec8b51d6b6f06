"""The feature layout of :class:`~surrogate.predict.features.ArchFeatures`, defined once.

Every feature is a function of three inputs of a compiled space:

- the one-hot encoding (``encoding`` part, passed through);
- ``z``: the per-position terms (``lat``, ``madds``, ... each ``(n, n_positions)``,
  kind-major) followed by the head terms (``head_ms``, ``head_madds``, ``head_params``);
- constants (stem latency and counts), which go into offsets.

Counts and table features are affine in ``z``, some under a log:
``features = [encoding | z @ w + b]``, then ``log`` on the columns ``log_cols``.
:class:`FeatureLayout` computes those matrices from the space once; :func:`combine`
applies them in numpy (:meth:`FeatureLayout.transform`, exact index vectors) or torch
(:class:`~surrogate.predict.differentiable.RelaxedFeatures`, expected terms of a relaxed
architecture), so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .compiled import CompiledSpace

PARTS = ("encoding", "counts", "table")
#: per-position terms of :meth:`CompiledSpace.terms` each part reads
POSITION_TERMS = {"counts": ("madds", "params", "n_layers", "act_elems"), "table": ("lat",)}
#: head terms each part reads (the head differs with the final width)
HEAD_TERMS = {"counts": ("head_madds", "head_params"), "table": ("head_ms",)}
_ORDER = ("lat", "madds", "params", "n_layers", "act_elems", "head_ms", "head_madds", "head_params")


def combine(enc, z, weights: dict, cat: Callable, log: Callable):
    """Features from the encoding ``enc`` (or None) and terms ``z`` with the layout's
    ``weights`` (numpy arrays or torch tensors); ``cat`` joins columns, ``log`` is the
    library's log."""
    out = z @ weights["w"] + weights["b"]
    cols = weights["log_cols"]
    out[:, cols] = log(out[:, cols])
    return out if enc is None else cat([enc, out])


@dataclass(frozen=True, eq=False)
class FeatureLayout:
    """Names, inputs and affine maps of the features of ``parts`` of a compiled space."""

    compiled: CompiledSpace
    parts: tuple[str, ...]
    names: np.ndarray
    encoding_width: int                 # 0 without the encoding part
    position_terms: tuple[str, ...]     # kinds of z, in order, then head_terms
    head_terms: tuple[str, ...]
    weights: dict                       # w, b (float64), log_cols (int64)
    table_sum: tuple[np.ndarray, float] | None  # (weights on z, offset): the table sum

    @classmethod
    def build(cls, compiled: CompiledSpace, parts: Sequence[str]) -> "FeatureLayout":
        """The layout of ``parts`` (a non-empty subset of :data:`PARTS`) for ``compiled``."""
        parts = tuple(parts)
        bad = [p for p in parts if p not in PARTS]
        if bad or not parts:
            raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {parts!r}")
        space, npos = compiled.space, len(compiled.positions)
        used = {k for p in parts for k in POSITION_TERMS.get(p, ()) + HEAD_TERMS.get(p, ())}
        kinds = tuple(k for k in _ORDER if k in used)
        pos_terms = tuple(k for k in kinds if not k.startswith("head_"))
        head_terms = tuple(k for k in kinds if k.startswith("head_"))
        n_z = npos * len(pos_terms) + len(head_terms)

        def col(kind: str, p: int | None = None) -> int:  # column of z
            if p is None:
                return npos * len(pos_terms) + head_terms.index(kind)
            return pos_terms.index(kind) * npos + p

        def total(kind: str, head: str | None = None) -> np.ndarray:  # sum over positions (+ head)
            w = np.zeros(n_z)
            w[[col(kind, p) for p in range(npos)]] = 1.0
            if head is not None:
                w[col(head)] = 1.0
            return w

        names: list[str] = []
        cols: list[tuple[np.ndarray, float]] = []  # (weights on z, offset) per affine column
        log_cols: list[int] = []

        def add(name: str, w: np.ndarray, b: float = 0.0, is_log: bool = False) -> None:
            if is_log:
                log_cols.append(len(cols))
            cols.append((w, float(b)))
            names.append(name)

        def unit(c: int, scale: float = 1.0) -> np.ndarray:
            w = np.zeros(n_z)
            w[c] = scale
            return w

        enc_width = 0
        if "encoding" in parts:
            enc_width = space.onehot_width
            names += [f"{d.name}={c}" for d in space.decisions for c in d.choices]
        if "counts" in parts:
            stem_madds, stem_params = (float(v) for v in compiled.stem_counts)
            add("log_madds", total("madds", "head_madds"), stem_madds, is_log=True)
            add("log_params", total("params", "head_params"), stem_params, is_log=True)
            add("n_layers", total("n_layers"))
            for p in range(npos):
                add(f"madds_p{p}", unit(col("madds", p), 1e-6))
            for p in range(npos):
                add(f"act_p{p}", unit(col("act_elems", p), 1e-6))
        table_sum = None
        if "table" in parts:
            table_sum = (total("lat", "head_ms"), float(compiled.stem_ms))
            add("log_table_sum", *table_sum, is_log=True)
            add("table_sum", *table_sum)
            add("stem_ms", np.zeros(n_z), compiled.stem_ms)
            add("head_ms", unit(col("head_ms")))
            for p in range(npos):
                add(f"table_p{p}", unit(col("lat", p)))
        w = np.array([c[0] for c in cols]).reshape(len(cols), n_z).T
        weights = {"w": np.ascontiguousarray(w), "b": np.array([c[1] for c in cols]),
                   "log_cols": np.array(log_cols, dtype=np.int64)}
        return cls(compiled, parts, np.array(names), enc_width, pos_terms, head_terms, weights,
                   table_sum)

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.names)

    def terms(self, idx: np.ndarray) -> np.ndarray:
        """``z`` of canonical index vectors ``idx``: ``(n, n_terms)`` float64."""
        compiled = self.compiled
        t = compiled.terms(idx)
        state = t["final_state"]
        head = {"head_ms": t["head_ms"], "head_madds": compiled.head_madds[state],
                "head_params": compiled.head_params[state]}
        cols = [t[k] for k in self.position_terms] + [head[k][:, None] for k in self.head_terms]
        return np.concatenate(cols, axis=1) if cols else np.zeros((len(idx), 0))

    def transform(self, idx: np.ndarray) -> np.ndarray:
        """Feature matrix ``(n, n_features)`` (float64) of canonical index vectors ``idx``."""
        enc = None
        if self.encoding_width:
            enc = self.compiled.space.onehot(idx).astype(np.float64)
        return combine(enc, self.terms(idx), self.weights,
                       lambda cols: np.concatenate(cols, axis=1), np.log)
