"""Operator latency lookup: a measured table, optionally backed by an operator-level model."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

from space.arch import LayerConfig

from ..tables import Table, file_sha256


class OpTable:
    """Median latency (ms) per operator key; identity layers cost 0.

    ``fallback`` (e.g. a fitted :class:`~surrogate.predict.oplevel.OpLevelModel`'s
    ``predict_op``) answers for operators the table never measured; without it they
    are ``nan`` and predictors refuse them with the list of what to measure.
    """

    def __init__(self, entries: Mapping[str, float], *, profile: str | None = None,
                 space: str | None = None, sha256: str | None = None, source: str | None = None,
                 fallback: Callable[[LayerConfig], float] | None = None):
        self.entries = dict(entries)
        self.profile, self.space, self.sha256, self.source = profile, space, sha256, source
        self.fallback = fallback

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **kw) -> "OpTable":
        """Read a ``<space>_ops.csv`` (validated; errors name file and line)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no operator table at {path}")
        rows = Table.ops(path).read()
        space = path.name[: -len("_ops.csv")] if path.name.endswith("_ops.csv") else None
        kw.setdefault("profile", path.parent.name)
        kw.setdefault("space", space)
        return cls({r["op_key"]: r["median_ms"] for r in rows}, sha256=file_sha256(path),
                   source=str(path), **kw)

    @classmethod
    def shipped(cls, profile: str, space: str, root: str | os.PathLike | None = None) -> "OpTable":
        """The table under ``data/latency_tables/<profile>/<space>_ops.csv`` (or ``root``)."""
        from ..tables import table_path

        path = table_path(profile, space, "ops", root)
        if not path.is_file():
            raise FileNotFoundError(f"no shipped operator table for profile {profile!r} and space "
                                    f"{space!r} at {path}; measure it with: mnas measure ops "
                                    f"--profile {profile} --space {space}")
        return cls.from_csv(path)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, lc: LayerConfig) -> bool:
        return lc.key() in self.entries

    def __call__(self, lc: LayerConfig) -> float:
        if lc.is_identity:
            return 0.0
        v = self.entries.get(lc.key())
        if v is not None:
            return float(v)
        if self.fallback is not None:
            return float(self.fallback(lc))
        return math.nan
