"""The two clocks of a timed run and the per-round latency estimators.

``RunTimes`` holds, per run, wall time (``perf_counter_ns``, CUDA events or
benchmark_model) and the calling thread's CPU time (``thread_time_ns``, NaN
where not meaningful). ``estimate`` reduces one round's runs to a latency.

An estimator ending in ``+ref`` (``min+ref``) is *reference-paired*: each round of
an item is followed at once by a short block of the reference operator, and the
round's latency is ``estimate(item) / estimate(reference) * base``, ``base`` being
the table's fixed reference time. On a shared host whose speed moves by tens of
percent from one second to the next (neighbours on the physical core or its
memory), the ratio to a reference timed a few milliseconds later cancels most of
it (``bench/results/repeatability_*``). ``estimate`` applies the raw part.
The clock and estimator names are :mod:`surrogate.timingspec`'s (re-exported here and by
:mod:`.timing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..timingspec import (CLOCKS, DEFAULT_ESTIMATOR, ESTIMATORS, RAW_ESTIMATORS,  # noqa: F401
                          REF_SUFFIX, check_estimator, split_estimator)

__all__ = ["CLOCKS", "ESTIMATORS", "RAW_ESTIMATORS", "REF_SUFFIX", "DEFAULT_ESTIMATOR", "RunTimes",
           "as_run_times", "estimate", "check_estimator", "split_estimator"]

@dataclass(frozen=True)
class RunTimes:
    """Per-run times of one timed call, in ms, on both clocks.

    ``wall_ms``: ``perf_counter_ns`` (CUDA events, or benchmark_model's figure);
    ``cpu_ms``: ``thread_time_ns`` of the calling thread, NaN where not meaningful
    (CUDA, adb).
    """

    wall_ms: np.ndarray
    cpu_ms: np.ndarray

    def __post_init__(self) -> None:
        wall = np.asarray(self.wall_ms, dtype=np.float64).ravel()
        cpu = np.asarray(self.cpu_ms, dtype=np.float64).ravel()
        if wall.shape != cpu.shape:
            raise ValueError(f"RunTimes: wall_ms has {wall.size} runs but cpu_ms has {cpu.size}")
        object.__setattr__(self, "wall_ms", wall)
        object.__setattr__(self, "cpu_ms", cpu)

    @classmethod
    def wall_only(cls, wall_ms: np.ndarray | Sequence[float]) -> "RunTimes":
        """Wall times with no CPU clock (cpu_ms all NaN)."""
        wall = np.asarray(wall_ms, dtype=np.float64).ravel()
        return cls(wall, np.full(wall.shape, np.nan))

    def __len__(self) -> int:
        return int(self.wall_ms.size)

    @property
    def has_cpu(self) -> bool:
        """Whether every run has a finite CPU time."""
        return bool(self.cpu_ms.size) and bool(np.all(np.isfinite(self.cpu_ms)))

    def clock(self, name: str) -> np.ndarray:
        """The per-run ms of clock ``name`` (``cpu`` or ``wall``)."""
        if name == "wall":
            return self.wall_ms
        if name == "cpu":
            return self.cpu_ms
        raise ValueError(f"clock must be one of {CLOCKS}, got {name!r}")


def as_run_times(value: "RunTimes | np.ndarray | Sequence[float]") -> RunTimes:
    """``value`` as RunTimes; a bare array (old-style item) is wall time only."""
    return value if isinstance(value, RunTimes) else RunTimes.wall_only(value)


def estimate(times_ms: np.ndarray | Sequence[float], estimator: str = DEFAULT_ESTIMATOR) -> float:
    """One round's latency from its runs: median, 25th or 10th percentile, or minimum.

    NaN when any run is NaN (a clock the runner does not have). A ``+ref``
    estimator applies its raw part (the pairing is :func:`~.timing.measure`'s).
    """
    estimator, _ = split_estimator(estimator)
    x = np.asarray(times_ms, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("estimate needs at least one run time, got none")
    if np.isnan(x).any():
        return math.nan
    if estimator == "median":
        return float(np.median(x))
    if estimator == "min":
        return float(np.min(x))
    return float(np.percentile(x, 25 if estimator == "p25" else 10))
