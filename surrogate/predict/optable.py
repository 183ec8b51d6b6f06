"""Operator latency lookup: a measured table, optionally backed by an operator-level model."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from space.arch import Arch, LayerConfig

from ..paths import parse_table_name
from ..tables import Table, file_sha256


@dataclass(frozen=True)
class OpCost:
    """One operator of a network: its key, latency (ms) and where that came from.

    ``source``: ``measured`` (a table entry), ``modelled`` (the fallback) or
    ``missing`` (neither; ``ms`` is ``nan``).
    """

    key: str
    ms: float
    source: str


@dataclass(frozen=True)
class OpSum:
    """The sum of a network's operators over an :class:`OpTable`.

    ``ms`` is ``nan`` when an operator is ``missing``; identity layers cost 0 and are
    not counted. ``ops`` holds the per-operator breakdown when it was asked for.
    """

    ms: float
    measured: int
    modelled: int
    missing: int
    ops: tuple[OpCost, ...] = ()


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
        try:
            _, name, kind, tag = parse_table_name(path)
        except ValueError:
            name = kind = None
        space = name if kind == "ops" and tag is None else None
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

    def with_fallback(self, fallback: Callable[[LayerConfig], float] | None) -> "OpTable":
        """A copy of this table answering unmeasured operators with ``fallback``."""
        return OpTable(self.entries, profile=self.profile, space=self.space, sha256=self.sha256,
                       source=self.source, fallback=fallback)

    def sum(self, arch: Arch, *, breakdown: bool = False) -> OpSum:
        """Sum ``arch``'s operators (stem, layers, head) over the table: any network.

        Operators the table lacks go to ``fallback`` (counted as modelled), or are
        ``missing`` without one. ``breakdown=True`` also returns every operator's cost.
        """
        if not isinstance(arch, Arch):
            raise TypeError(f"arch: expected a space.Arch, got {type(arch).__name__}")
        costs = []
        for lc in arch.ops():
            if lc.is_identity:
                continue
            v = self.entries.get(lc.key())
            if v is not None:
                costs.append(OpCost(lc.key(), float(v), "measured"))
            elif self.fallback is not None:
                costs.append(OpCost(lc.key(), float(self.fallback(lc)), "modelled"))
            else:
                costs.append(OpCost(lc.key(), math.nan, "missing"))
        n = {k: sum(c.source == k for c in costs) for k in ("measured", "modelled", "missing")}
        total = math.nan if n["missing"] else float(sum(c.ms for c in costs))
        return OpSum(total, n["measured"], n["modelled"], n["missing"],
                     tuple(costs) if breakdown else ())
