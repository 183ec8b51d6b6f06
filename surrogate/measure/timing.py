"""Measurement methodology, independent of model and runtime.

An *item* is a ``(warmup, runs) -> RunTimes`` (wall and thread-CPU ms per run;
``Runner.timer(handle)`` gives one); an item returning a bare ``np.ndarray`` is
taken as wall time only. ``measure`` runs several rounds
interleaved over all items (round-robin, order shuffled per round with a seeded
rng); a round is warm-up + R timed runs, summarised by the settings' estimator
(median, p25, p10 or min) on the settings' clock (``cpu`` or ``wall``). The final
latency is the median of the round estimates, so slow drift of the machine
(frequency, neighbours on a shared VM) averages out over the list instead of
biasing the items timed during a bad minute. A reference item is re-timed at the
start of each round and every ``reference_every`` items to report drift, and
items whose round medians disagree by more than ``max_rel_spread`` get up to
``max_extra_rounds`` more rounds.

With a reference-paired estimator (``min+ref``, :mod:`.clocks`) every round of an
item is followed by ``pair_runs`` runs of the reference, and the round's latency is
the ratio of the two times the base (``reference_base_ms``: the table's fixed
reference time). Slow drift and second-scale episodes of the host cancel in the
ratio; the raw figures stay in ``wall_ms``/``cpu_ms``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .clocks import (CLOCKS, DEFAULT_ESTIMATOR, ESTIMATORS, RunTimes, as_run_times, estimate,
                     split_estimator)
from .itemstats import ItemResult, summarize
from .otherload import OtherLoad

__all__ = ["TimeFn", "RunTimes", "as_run_times", "estimate", "CLOCKS", "ESTIMATORS",
           "DEFAULT_ESTIMATOR", "MeasureSettings", "ItemResult", "MeasureReport", "OtherLoad",
           "summarize", "measure", "DriftGuard"]

TimeFn = Callable[[int, int], "RunTimes | np.ndarray"]


@dataclass(frozen=True)
class MeasureSettings:
    """Knobs of ``measure``; defaults are justified by figures in NOTES.md.

    Attributes:
        warmup: untimed runs before each round's timed runs (re-warms caches
            after the other items ran).
        runs: timed runs per round.
        rounds: interleaved rounds per item (5: the median of 5 round medians
            tolerates 2 disturbed rounds).
        max_rel_spread: re-measure an item when IQR(round medians)/median
            exceeds this (IQR rather than MAD: MAD is 0 for a 3-vs-2 split
            between two levels, which is exactly what needs re-measuring).
        max_extra_rounds: at most this many extra rounds per re-measured item.
        reference_every: re-time the reference after this many items (also
            at the start of each round); 0 = only at round starts.
        min_round_ms: raise ``runs`` for fast items so one round's timed runs
            last at least this long (0 = off).
        seed: seed of the per-round shuffles when no rng is given.
        max_drift: table jobs re-time a chunk whose reference-operator median is
            off the reference baseline (the profile's tables' usual reference
            time, :func:`~surrogate.tables.profile_reference_baseline`)
            by more than this fraction
            (0 = never); the host of these VMs slows by 10-30% in episodes.
        drift_retries: at most this many re-timings per chunk (the attempt
            closest to the baseline is kept); after 3 chunks in a row that no
            retry could bring back, retries pause until a chunk passes
            (a lasting shift is recorded, not fought).
        estimator: per-round latency from the round's runs, one of
            :data:`ESTIMATORS`; None = the profile's in table jobs,
            :data:`DEFAULT_ESTIMATOR` in a bare :func:`measure` call.
        clock: ``cpu`` (thread CPU time) or ``wall``; None = the profile's
            clock in table jobs, ``wall`` in a bare :func:`measure` call.
        pair_runs: with a ``+ref`` estimator, timed runs of the reference right
            after each round of an item (after one warm-up run).
    """

    warmup: int = 10
    runs: int = 30
    rounds: int = 5
    max_rel_spread: float = 0.05
    max_extra_rounds: int = 3
    reference_every: int = 25
    min_round_ms: float = 0.0
    seed: int = 0
    max_drift: float = 0.05
    drift_retries: int = 2
    estimator: str | None = None
    clock: str | None = None
    pair_runs: int = 10

    def __post_init__(self) -> None:
        if self.estimator is not None and self.estimator not in ESTIMATORS:
            raise ValueError(f"MeasureSettings.estimator must be one of {ESTIMATORS}, "
                             f"got {self.estimator!r}")
        if self.clock is not None and self.clock not in CLOCKS:
            raise ValueError(f"MeasureSettings.clock must be one of {CLOCKS} or None (the "
                             f"profile's), got {self.clock!r}")
        if self.warmup < 0:
            raise ValueError(f"MeasureSettings.warmup must be >= 0, got {self.warmup}")
        for name in ("runs", "rounds", "pair_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"MeasureSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_extra_rounds < 0 or self.reference_every < 0:
            raise ValueError("MeasureSettings.max_extra_rounds and reference_every must be >= 0")
        if not self.max_rel_spread > 0:
            raise ValueError(f"MeasureSettings.max_rel_spread must be > 0, got {self.max_rel_spread}")
        if self.min_round_ms < 0:
            raise ValueError(f"MeasureSettings.min_round_ms must be >= 0, got {self.min_round_ms}")
        if self.max_drift < 0 or self.drift_retries < 0:
            raise ValueError("MeasureSettings.max_drift and drift_retries must be >= 0, got "
                             f"{self.max_drift} and {self.drift_retries}")

    @property
    def paired(self) -> bool:
        """Whether the estimator is reference-paired (``+ref``)."""
        return split_estimator(self.latency_estimator)[1]

    @property
    def latency_estimator(self) -> str:
        """The estimator latency is computed with (:data:`DEFAULT_ESTIMATOR` when unset)."""
        return self.estimator or DEFAULT_ESTIMATOR

    @property
    def latency_clock(self) -> str:
        """The clock latency is read from (``wall`` when unset)."""
        return self.clock or "wall"

    def as_dict(self) -> dict[str, Any]:
        """Settings as a JSON-ready dict."""
        return asdict(self)


@dataclass
class MeasureReport:
    """Results per item, drift of the reference, and how busy the rest of the machine was.

    ``other_cpu_cores``: mean number of cores other processes used meanwhile
    (None off Linux), over the whole call and per round (extra rounds
    included); on a 2-core VM anything above ~0.05 means a neighbour was
    competing and the figures deserve a second run. ``reference_ms`` is each
    reference timing under the settings' clock and estimator (what drift is
    judged on); ``reference_wall_ms`` / ``reference_cpu_ms`` the same per clock.
    """

    results: dict[str, ItemResult]
    settings: MeasureSettings
    reference: str | None = None
    reference_ms: list[float] = field(default_factory=list)
    drift_ratio: float = 1.0
    drift_last_first: float = 1.0
    wall_s: float = 0.0
    other_cpu_cores: float | None = None
    round_other_cpu_cores: list[float | None] = field(default_factory=list)
    reference_wall_ms: list[float] = field(default_factory=list)
    reference_cpu_ms: list[float] = field(default_factory=list)
    reference_base_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Results, settings and drift reference as a JSON-ready dict."""
        return {
            "results": {k: v.as_dict() for k, v in self.results.items()},
            "settings": self.settings.as_dict(),
            "reference": self.reference,
            "reference_ms": list(self.reference_ms),
            "reference_wall_ms": list(self.reference_wall_ms),
            "reference_cpu_ms": list(self.reference_cpu_ms),
            "drift_ratio": self.drift_ratio,
            "drift_last_first": self.drift_last_first,
            "wall_s": self.wall_s,
            "other_cpu_cores": self.other_cpu_cores,
            "round_other_cpu_cores": list(self.round_other_cpu_cores),
            "reference_base_ms": self.reference_base_ms,
        }


def _as_pairs(items: Mapping[str, TimeFn] | Sequence[tuple[str, TimeFn]]) -> list[tuple[str, TimeFn]]:
    pairs = list(items.items()) if isinstance(items, Mapping) else [(str(n), f) for n, f in items]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"item names must be unique; repeated: {dup[:5]}")
    for n, f in pairs:
        if not callable(f):
            raise ValueError(f"item {n!r} is not callable (expected (warmup, runs) -> RunTimes)")
    return pairs


def _check_reference(s: MeasureSettings, fns: Mapping[str, TimeFn],
                     reference: str | tuple[str, TimeFn] | None,
                     reference_base_ms: float | None) -> tuple[str | None, TimeFn | None]:
    """``(name, fn)`` of ``measure``'s reference (``(None, None)`` without one), validated."""
    ref_name: str | None = None
    ref_fn: TimeFn | None = None
    if isinstance(reference, str):
        if reference not in fns:
            raise ValueError(f"reference {reference!r} is not one of the items")
        ref_name, ref_fn = reference, fns[reference]
    elif reference is not None:
        ref_name, ref_fn = reference
    if s.paired and ref_fn is None:
        raise ValueError(f"estimator {s.latency_estimator!r} is reference-paired: measure() "
                         f"needs a reference")
    if reference_base_ms is not None and not reference_base_ms > 0:
        raise ValueError(f"reference_base_ms must be > 0, got {reference_base_ms}")
    return ref_name, ref_fn


@dataclass
class _Rounds:
    """State of one :func:`measure` call: every round's times, the reference timings, progress."""

    s: MeasureSettings
    fns: dict[str, TimeFn]
    ref_fn: TimeFn | None
    rng: np.random.Generator
    progress: Callable[[int, int], None] | None
    total: int
    done: int = 0
    ref_ms: list[float] = field(default_factory=list)
    ref_wall: list[float] = field(default_factory=list)
    ref_cpu: list[float] = field(default_factory=list)
    round_other: list[float | None] = field(default_factory=list)
    times: dict[str, list[RunTimes]] = field(init=False)
    pairs: dict[str, list[RunTimes]] = field(init=False)
    runs_for: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.times = {n: [] for n in self.fns}
        self.pairs = {n: [] for n in self.fns}
        self.runs_for = {n: self.s.runs for n in self.fns}

    def time_ref(self) -> None:
        """Time the reference once on both clocks (nothing without a reference)."""
        if self.ref_fn is None:
            return
        s, est = self.s, self.s.latency_estimator
        rt = as_run_times(self.ref_fn(s.warmup, s.runs))
        self.ref_wall.append(estimate(rt.wall_ms, est))
        self.ref_cpu.append(estimate(rt.cpu_ms, est))
        self.ref_ms.append(self.ref_wall[-1] if s.latency_clock == "wall" else self.ref_cpu[-1])

    def time_item(self, name: str) -> None:
        """One round of item ``name`` (then its paired reference runs under ``+ref``)."""
        s = self.s
        t = as_run_times(self.fns[name](s.warmup, self.runs_for[name]))
        if len(t) == 0:
            raise ValueError(f"item {name!r} returned no run times")
        if s.latency_clock == "cpu" and not t.has_cpu:
            raise ValueError(f"item {name!r} has no thread CPU time (a wall-only runner such "
                             f"as CUDA or adb, or an item returning a bare array); use clock "
                             f"'wall'")
        self.times[name].append(t)
        if s.paired:  # the reference at once after the item: same moment of the host
            self.pairs[name].append(as_run_times(self.ref_fn(1, s.pair_runs)))
        if s.min_round_ms > 0 and len(self.times[name]) == 1:
            per_run = float(np.median(t.wall_ms))  # a round's length is wall time
            if per_run > 0:
                self.runs_for[name] = max(s.runs, int(math.ceil(s.min_round_ms / per_run)))

    def one_round(self, names: list[str]) -> None:
        """One round over ``names`` in shuffled order, the reference re-timed along the way."""
        per_round = OtherLoad()
        per_round.start()
        self.time_ref()
        order = [names[i] for i in self.rng.permutation(len(names))]
        for k, name in enumerate(order):
            if self.s.reference_every and k and k % self.s.reference_every == 0:
                self.time_ref()
            self.time_item(name)
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.total)
        self.round_other.append(per_round.stop())

    def summary(self, name: str, base: float | None, remeasured: bool = False) -> ItemResult:
        """:func:`summarize` of item ``name``'s rounds so far."""
        s = self.s
        return summarize(name, self.times[name], remeasured, clock=s.latency_clock,
                         estimator=s.latency_estimator,
                         paired=self.pairs[name] if s.paired else None, base_ms=base)

    def extra_rounds(self, names: list[str], base: float | None) -> set[str]:
        """Re-measure items whose round estimates spread too wide; returns their names."""
        remeasured: set[str] = set()
        for _ in range(self.s.max_extra_rounds):
            wide = [n for n in names if self.summary(n, base).rel_spread > self.s.max_rel_spread]
            if not wide:
                break
            remeasured.update(wide)
            self.total += len(wide)
            self.one_round(wide)
        return remeasured


def _drift(ref_ms: list[float]) -> tuple[float, float]:
    """``(max/min, last/first)`` of the reference timings (1.0 each without them)."""
    drift = max(ref_ms) / min(ref_ms) if ref_ms and min(ref_ms) > 0 else 1.0
    last_first = ref_ms[-1] / ref_ms[0] if ref_ms and ref_ms[0] > 0 else 1.0
    return float(drift), float(last_first)


def measure(
    items: Mapping[str, TimeFn] | Sequence[tuple[str, TimeFn]],
    settings: MeasureSettings | None = None,
    *,
    reference: str | tuple[str, TimeFn] | None = None,
    rng: np.random.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
    reference_base_ms: float | None = None,
) -> MeasureReport:
    """Time ``items`` in interleaved, shuffled rounds; see the module docstring.

    ``reference`` is the name of one of the items or a separate ``(name, fn)``;
    None disables drift tracking. ``progress(done, total)`` is called after
    each timed round of an item (total grows when items are re-measured).
    ``reference_base_ms`` scales a ``+ref`` estimator's ratios (None: the median
    of this call's round-start reference timings).
    """
    s = settings or MeasureSettings()
    pairs_in = _as_pairs(items)
    fns = dict(pairs_in)
    rng = rng if rng is not None else np.random.default_rng(s.seed)
    ref_name, ref_fn = _check_reference(s, fns, reference, reference_base_ms)
    t_start = time.perf_counter()
    other = OtherLoad()
    other.start()
    names = [n for n, _ in pairs_in]
    run = _Rounds(s, fns, ref_fn, rng, progress, total=len(pairs_in) * s.rounds)
    for _ in range(s.rounds):
        run.one_round(names)
    base = reference_base_ms or (float(np.median(run.ref_ms)) if run.ref_ms else None)
    remeasured = run.extra_rounds(names, base)
    run.time_ref()
    results = {n: run.summary(n, base, n in remeasured) for n in names}
    drift, last_first = _drift(run.ref_ms)
    return MeasureReport(
        results=results,
        settings=s,
        reference=ref_name,
        reference_ms=run.ref_ms,
        drift_ratio=drift,
        drift_last_first=last_first,
        wall_s=time.perf_counter() - t_start,
        other_cpu_cores=other.stop(),
        round_other_cpu_cores=run.round_other,
        reference_wall_ms=run.ref_wall,
        reference_cpu_ms=run.ref_cpu,
        reference_base_ms=base if s.paired else None,
    )


@dataclass
class DriftGuard:
    """Re-time chunks whose reference-operator median strays from a baseline.

    A table job times its items in chunks, each with the reference operator
    re-timed inside it; drift is judged on the settings' clock and estimator
    (``MeasureReport.reference_ms``). ``baseline_ms`` is the table's reference median before
    this job (None: the first accepted chunk sets it). ``measure_chunk`` times a
    chunk up to ``1 + settings.drift_retries`` times and keeps the attempt whose
    reference is closest to the baseline; counters end up in the provenance.
    With a ``+ref`` estimator chunks are never re-timed (the pairing cancels the
    drift; deviations are still counted) and ``base_ms`` scales the ratios.
    """

    settings: MeasureSettings
    baseline_ms: float | None = None
    retried_chunks: int = 0
    retries: int = 0
    unresolved_chunks: int = 0
    base_ms: float | None = None
    _failed_in_row: int = 0

    def deviation(self, report: MeasureReport) -> float:
        """|reference median / baseline - 1| of one attempt (0 without a baseline)."""
        if self.baseline_ms is None or not report.reference_ms or self.baseline_ms <= 0:
            return 0.0
        return abs(float(np.median(report.reference_ms)) / self.baseline_ms - 1.0)

    def measure_chunk(self, items: Mapping[str, TimeFn], reference: tuple[str, TimeFn],
                      seed: int) -> MeasureReport:
        """``measure`` one chunk, re-timing it while its reference has drifted."""
        s = self.settings
        allowed = s.drift_retries if (s.max_drift > 0 and self._failed_in_row < 3
                                      and not s.paired) else 0
        best, best_dev, attempt = None, math.inf, 0
        while True:
            rep = measure(items, s, reference=reference,
                          rng=np.random.default_rng(seed + 7919 * attempt),
                          reference_base_ms=self.base_ms)
            dev = self.deviation(rep)
            if best is None or dev < best_dev:
                best, best_dev = rep, dev
            if s.max_drift <= 0 or dev <= s.max_drift or attempt >= allowed:
                break
            attempt += 1
        self.retries += attempt
        self.retried_chunks += attempt > 0
        if s.max_drift > 0 and best_dev > s.max_drift:
            self.unresolved_chunks += 1
            self._failed_in_row += 1
        else:
            self._failed_in_row = 0
        if self.baseline_ms is None and best.reference_ms:
            self.baseline_ms = float(np.median(best.reference_ms))
        if s.paired and self.base_ms is None:
            self.base_ms = best.reference_base_ms
        return best

    def as_dict(self) -> dict[str, Any]:
        """Counters for the provenance file."""
        return {"baseline_ref_ms": self.baseline_ms, "max_drift": self.settings.max_drift,
                "retried_chunks": self.retried_chunks, "retries": self.retries,
                "unresolved_chunks": self.unresolved_chunks, "reference_base_ms": self.base_ms}
