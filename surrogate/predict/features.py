"""Architecture inputs -> numeric features (a scikit-learn transformer).

Estimators accept architectures in any of three forms: :class:`~space.arch.Arch`
objects, architecture strings, or an ``(n, n_decisions)`` integer array of index
vectors of the space (the fast, vectorised path). :func:`as_indices` turns each
into canonical index vectors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from space.arch import Arch
from space.blockstring import parse_arch
from space.spaces import SearchSpace, get_space

from .compiled import CompiledSpace
from .layout import PARTS, FeatureLayout
from .optable import OpTable


def as_indices(space: SearchSpace, X) -> np.ndarray:
    """Canonical index vectors for archs, arch strings or an index array."""
    if isinstance(X, np.ndarray) and X.dtype.kind in "iu":
        arr = X.reshape(1, -1) if X.ndim == 1 else X
        if arr.ndim != 2 or arr.shape[1] != space.n_decisions:
            raise ValueError(f"{space.name}: expected an (n, {space.n_decisions}) index array, "
                             f"got shape {X.shape}")
        arr = arr.astype(np.int64, copy=False)
        card = space.cardinalities
        if (arr < 0).any() or (arr >= card).any():
            bad = np.argwhere((arr < 0) | (arr >= card))[0]
            raise ValueError(f"{space.name}: decision {space.decisions[bad[1]].name!r} has index "
                             f"{arr[bad[0], bad[1]]} out of range in row {bad[0]}")
        return arr
    if isinstance(X, (Arch, str)):
        X = [X]
    out = []
    for i, x in enumerate(X):
        if isinstance(x, str):
            x = parse_arch(x)
        if not isinstance(x, Arch):
            raise ValueError(f"item {i}: expected an Arch, an architecture string or an index "
                             f"array, got {type(x).__name__}")
        out.append(space.from_arch(x))
    if not out:
        raise ValueError("no architectures given")
    return np.array(out, dtype=np.int64)


def resolve_table(table, space: str) -> OpTable | None:
    """An OpTable from an OpTable, a CSV path, ``'shipped:<profile>'`` or None."""
    if table is None or isinstance(table, OpTable):
        return table
    if isinstance(table, str) and table.startswith("shipped:"):
        return OpTable.shipped(table.split(":", 1)[1], space)
    if isinstance(table, str):
        return OpTable.from_csv(table)
    raise ValueError(f"table must be an OpTable, a CSV path or 'shipped:<profile>', got {table!r}")


class ArchFeatures(TransformerMixin, BaseEstimator):
    """Numeric features of architectures.

    Parts: ``encoding`` (the space's one-hot), ``counts`` (log MAdds, log params,
    layers, per-position MAdds and activation volume), ``table`` (total and
    per-position operator-table latency, stem, head). ``table`` needs ``table``.
    The columns are laid out once, by :class:`~surrogate.predict.layout.FeatureLayout`
    (``layout_``), which the differentiable features share.
    """

    def __init__(self, space: str = "anb", table=None, parts: Sequence[str] = PARTS):
        self.space = space
        self.table = table
        self.parts = parts

    def fit(self, X=None, y=None):
        """Resolve the space, compile its tables and lay out the features; returns self."""
        self.space_ = get_space(self.space)
        table = resolve_table(self.table, self.space)
        if "table" in self.parts and table is None:
            raise ValueError("the 'table' feature part needs an operator table (table=...)")
        self.table_ = table
        self.compiled_ = CompiledSpace.build(self.space_, table)
        if "table" in self.parts:
            missing = self.compiled_.missing_ops()
            self.missing_ops_ = [lc.key() for lc in missing]
        else:
            self.missing_ops_ = []
        self.layout_ = FeatureLayout.build(self.compiled_, self.parts)
        self.feature_names_out_ = self.layout_.names
        self.n_features_in_ = self.space_.n_decisions
        return self

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns."""
        return self.feature_names_out_

    def table_sum(self, X) -> np.ndarray:
        """Operator-table sum (ms) per architecture."""
        idx = as_indices(self.space_, X)
        s = self.compiled_.table_sum(idx)
        if self.table_ is not None and not np.all(np.isfinite(s)):
            raise ValueError(f"{int((~np.isfinite(s)).sum())} architecture(s) use operators the "
                             f"table lacks (e.g. {self.missing_ops_[:2]}); measure them (`mnas measure "
                             f"ops --archs FILE`) or give the table an operator-level fallback")
        return s

    def transform(self, X) -> np.ndarray:
        """Feature matrix (n, n_features) for architectures ``X`` (see :mod:`.layout`)."""
        out = self.layout_.transform(as_indices(self.space_, X))
        if "table" in self.parts:
            s = out[:, list(self.feature_names_out_).index("table_sum")]
            if not np.all(np.isfinite(s)):
                raise ValueError(f"architectures use operators the table lacks (e.g. "
                                 f"{self.missing_ops_[:2]}); measure them (`mnas measure ops --archs "
                                 f"FILE`) or add an operator-level fallback")
        return out
