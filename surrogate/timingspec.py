"""How a latency is timed, in one record: clock, per-round estimator, warm-up/runs/rounds,
reference pairing and the host-reference tolerance.

Clocks are ``cpu`` (the calling thread's CPU time) or ``wall``; an estimator reduces one
round's runs (``median``, ``p25``, ``p10``, ``min``) and its ``+ref`` form pairs each round
with the reference operator (:mod:`surrogate.measure.clocks`). Tables written before the
clock columns existed read as :data:`LEGACY_CLOCK` / :data:`LEGACY_ESTIMATOR`. Imports
nothing from :mod:`surrogate.measure` (it sits below :mod:`surrogate.tables`).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .paths import read_provenance

__all__ = ["CLOCKS", "DEFAULT_ESTIMATOR", "ESTIMATORS", "HOST_REFERENCE_TOLERANCE",
           "HOST_REFERENCE_TOLERANCE_PAIRED", "LEGACY_CLOCK", "LEGACY_ESTIMATOR", "RAW_ESTIMATORS",
           "REF_SUFFIX", "TimingSpec", "check_clock", "check_estimator", "split_estimator"]

#: the two clocks every CPU run records: thread CPU time and wall time
CLOCKS: tuple[str, ...] = ("cpu", "wall")
#: per-round estimators of the latency, from the runs of one round
RAW_ESTIMATORS: tuple[str, ...] = ("median", "p25", "p10", "min")
#: suffix of the reference-paired form of an estimator
REF_SUFFIX = "+ref"
#: every estimator a table may name: the raw ones, then their reference-paired forms
ESTIMATORS: tuple[str, ...] = RAW_ESTIMATORS + tuple(e + REF_SUFFIX for e in RAW_ESTIMATORS)
#: the estimator used when none is given: chosen by bench/clock_estimator.py (the lowest
#: worst-case median |difference| between idle and busy passes; "min" in each of 3 runs,
#: bench/results/clock_estimator.md) and recorded in every table's provenance
DEFAULT_ESTIMATOR = "min"
#: how tables without clock columns (legacy) were timed
LEGACY_CLOCK, LEGACY_ESTIMATOR = "wall", "median"
#: this host's reference operator may differ this much from the tables' before the
#: shipped predictor is judged to describe another host
HOST_REFERENCE_TOLERANCE = 0.10
#: the same for reference-paired tables (estimator ``*+ref``): their latencies are
#: ratios to the reference timed at the same moment, so a host running slower or faster
#: for a while (20-40% on a shared VM) still matches; only a different class of speed
#: counts as another host
HOST_REFERENCE_TOLERANCE_PAIRED = 0.5


def check_clock(clock: str) -> None:
    """Raise ValueError unless ``clock`` is one of :data:`CLOCKS`."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")


def check_estimator(estimator: str) -> None:
    """Raise ValueError unless ``estimator`` is one of :data:`ESTIMATORS`."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def split_estimator(estimator: str) -> tuple[str, bool]:
    """``(raw estimator, reference-paired?)``: ``"min+ref"`` -> ``("min", True)``."""
    check_estimator(estimator)
    if estimator.endswith(REF_SUFFIX):
        return estimator[: -len(REF_SUFFIX)], True
    return estimator, False


@dataclass(frozen=True)
class TimingSpec:
    """One timing protocol: ``clock``, ``estimator``, ``warmup``/``runs``/``rounds`` (None:
    not recorded) and ``tolerance``, how far this host's reference operator may differ from
    the tables' before they describe another host (default: by the pairing)."""

    clock: str = LEGACY_CLOCK
    estimator: str = LEGACY_ESTIMATOR
    warmup: int | None = None
    runs: int | None = None
    rounds: int | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        check_clock(self.clock)
        check_estimator(self.estimator)
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", HOST_REFERENCE_TOLERANCE_PAIRED if self.paired
                               else HOST_REFERENCE_TOLERANCE)

    @property
    def raw_estimator(self) -> str:
        """The estimator without its ``+ref`` pairing."""
        return split_estimator(self.estimator)[0]

    @property
    def paired(self) -> bool:
        """Whether each round is paired with the reference operator (``+ref``)."""
        return split_estimator(self.estimator)[1]

    @property
    def key(self) -> tuple[str, str]:
        """``(clock, estimator)``: what a table never mixes."""
        return self.clock, self.estimator

    @classmethod
    def from_profile(cls, profile: Any) -> "TimingSpec":
        """The protocol of a device profile (any object with its timing fields)."""
        return cls(profile.clock, profile.estimator, profile.warmup, profile.runs, profile.rounds)

    @classmethod
    def from_table(cls, path: str | os.PathLike) -> "TimingSpec | None":
        """How a table was timed, from its provenance (legacy: wall/median); None: no
        readable provenance."""
        prov = read_provenance(path)
        return None if prov is None else cls.from_provenance(prov)

    @classmethod
    def from_provenance(cls, prov: dict) -> "TimingSpec":
        """How a table was timed, from its provenance object (legacy: wall/median)."""
        settings = prov.get("settings") if isinstance(prov.get("settings"), dict) else {}
        return cls(prov.get("clock") or LEGACY_CLOCK, prov.get("estimator") or LEGACY_ESTIMATOR,
                   *(settings.get(k) for k in ("warmup", "runs", "rounds")))

    def with_choices(self, clock: str | None = None, estimator: str | None = None) -> "TimingSpec":
        """This protocol with an explicit clock or estimator (None keeps its own)."""
        return dataclasses.replace(self, clock=clock or self.clock, estimator=estimator or self.estimator,
                                   tolerance=None)
