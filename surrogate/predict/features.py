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
from .optable import OpTable

PARTS = ("encoding", "counts", "table")


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
    """

    def __init__(self, space: str = "anb", table=None, parts: Sequence[str] = PARTS):
        self.space = space
        self.table = table
        self.parts = parts

    def fit(self, X=None, y=None):
        """Resolve the space, compile its tables and name the features; returns self."""
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {self.parts!r}")
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
        names = []
        npos = len(self.space_.positions)
        if "encoding" in self.parts:
            names += [f"{d.name}={c}" for d in self.space_.decisions for c in d.choices]
        if "counts" in self.parts:
            names += ["log_madds", "log_params", "n_layers"]
            names += [f"madds_p{p}" for p in range(npos)] + [f"act_p{p}" for p in range(npos)]
        if "table" in self.parts:
            names += ["log_table_sum", "table_sum", "stem_ms", "head_ms"]
            names += [f"table_p{p}" for p in range(npos)]
        self.feature_names_out_ = np.array(names)
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
        """Feature matrix (n, n_features) for architectures ``X``."""
        idx = as_indices(self.space_, X)
        n = idx.shape[0]
        t = self.compiled_.terms(idx)
        # filled in place: one (n, n_features) float64 array, no per-part copies
        out = np.empty((n, len(self.feature_names_out_)), dtype=np.float64)
        c = 0
        if "encoding" in self.parts:
            w = self.space_.onehot_width
            enc = out[:, c: c + w]
            enc.fill(0.0)
            offs = np.concatenate([[0], np.cumsum(self.space_.cardinalities)[:-1]])
            enc[np.arange(n)[:, None], idx + offs] = 1.0
            c += w
        npos = t["lat"].shape[1]
        if "counts" in self.parts:
            np.log(t["total_madds"], out=out[:, c])
            np.log(t["total_params"], out=out[:, c + 1])
            t["n_layers"].sum(axis=1, out=out[:, c + 2])
            c += 3
            np.divide(t["madds"], 1e6, out=out[:, c: c + npos])
            np.divide(t["act_elems"], 1e6, out=out[:, c + npos: c + 2 * npos])
            c += 2 * npos
        if "table" in self.parts:
            s = t["stem_ms"] + t["lat"].sum(axis=1) + t["head_ms"]
            if not np.all(np.isfinite(s)):
                raise ValueError(f"architectures use operators the table lacks (e.g. "
                                 f"{self.missing_ops_[:2]}); measure them (`mnas measure ops --archs "
                                 f"FILE`) or add an operator-level fallback")
            np.log(s, out=out[:, c])
            out[:, c + 1] = s
            out[:, c + 2] = t["stem_ms"]
            out[:, c + 3] = t["head_ms"]
            out[:, c + 4: c + 4 + npos] = t["lat"]
            c += 4 + npos
        assert c == out.shape[1]
        return out
