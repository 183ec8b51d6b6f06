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
class ItemResult:
    """Latency statistics of one item (ms; ``cv`` and ``rel_spread`` unitless).

    ``median_ms`` is the latency: the median over rounds of each round's
    ``estimator`` on ``clock`` (the name predates estimators; ``latency_ms`` is
    an alias). ``wall_ms`` and ``cpu_ms`` are the same on each clock (NaN when
    the runner lacks it). mean/std/var/p10/p90/iqr are over all pooled runs of
    ``clock``; ``mad_ms`` and ``rel_spread`` (IQR/median) are over the round
    estimates (``round_medians_ms``), i.e. round-to-round (drift) spread.
    With a ``+ref`` estimator the round estimates are normalised (``ref_ratio``:
    median item / paired-reference ratio; ``pair_ref_ms``: median paired
    reference), while ``wall_ms``/``cpu_ms`` and the pooled statistics stay raw.
    """

    name: str
    median_ms: float
    mean_ms: float
    std_ms: float
    var_ms2: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    mad_ms: float
    cv: float
    rel_spread: float
    n_runs: int
    n_rounds: int
    round_medians_ms: list[float] = field(default_factory=list)
    remeasured: bool = False
    wall_ms: float = math.nan
    cpu_ms: float = math.nan
    clock: str = "wall"
    estimator: str = DEFAULT_ESTIMATOR
    ref_ratio: float = math.nan
    pair_ref_ms: float = math.nan

    @property
    def latency_ms(self) -> float:
        """The latency under ``clock`` and ``estimator`` (same as ``median_ms``)."""
        return self.median_ms

    def as_dict(self) -> dict[str, Any]:
        """Statistics as a JSON-ready dict."""
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


def _round_latency(rounds: list[RunTimes], clock: str, estimator: str) -> np.ndarray:
    return np.array([estimate(r.clock(clock), estimator) for r in rounds])


def summarize(name: str, round_times: Sequence["RunTimes | np.ndarray"], remeasured: bool = False,
              *, clock: str = "wall", estimator: str = DEFAULT_ESTIMATOR,
              paired: Sequence[RunTimes] | None = None,
              base_ms: float | None = None) -> ItemResult:
    """Statistics from per-round run times (RunTimes, or arrays of wall ms).

    Each round is reduced by ``estimator`` on each clock; latency is the median
    of those round estimates on ``clock``. A ``+ref`` estimator needs ``paired``
    (the reference's runs after each round) and ``base_ms``.
    """
    if clock not in CLOCKS:
        raise ValueError(f"summarize: clock must be one of {CLOCKS}, got {clock!r}")
    raw_est, is_paired = split_estimator(estimator)
    if is_paired and (paired is None or len(paired) != len(round_times) or not base_ms
                      or not base_ms > 0):
        raise ValueError(f"item {name!r}: estimator {estimator!r} needs one paired reference "
                         f"timing per round and a positive base_ms")
    rounds = [rt for rt in (as_run_times(r) for r in round_times) if len(rt)]
    if not rounds:
        raise ValueError(f"item {name!r}: no timed runs to summarise")
    pooled = np.concatenate([r.clock(clock) for r in rounds])
    if not np.all(np.isfinite(pooled)):
        if clock == "cpu" and not all(r.has_cpu for r in rounds):
            raise ValueError(f"item {name!r}: no thread CPU time (a wall-only runner such as "
                             f"CUDA or adb); use clock 'wall'")
        raise ValueError(f"item {name!r}: non-finite run time")
    raw = _round_latency(rounds, clock, raw_est)
    ratio = pair_ms = math.nan
    if is_paired:
        refs = _round_latency([as_run_times(p) for p in paired], clock, raw_est)
        ratios = raw / refs
        meds = ratios * float(base_ms)
        ratio, pair_ms = float(np.median(ratios)), float(np.median(refs))
    else:
        meds = raw
    median = float(np.median(meds))
    walls = _round_latency(rounds, "wall", raw_est)
    cpus = _round_latency(rounds, "cpu", raw_est)
    mean = float(pooled.mean())
    std = float(pooled.std(ddof=1)) if pooled.size > 1 else 0.0
    q10, q25, q75, q90 = np.percentile(pooled, [10, 25, 75, 90])
    mad = float(np.median(np.abs(meds - median)))
    r25, r75 = np.percentile(meds, [25, 75])
    return ItemResult(
        name=name,
        median_ms=median,
        mean_ms=mean,
        std_ms=std,
        var_ms2=std * std,
        p10_ms=float(q10),
        p90_ms=float(q90),
        iqr_ms=float(q75 - q25),
        mad_ms=mad,
        cv=std / mean if mean > 0 else math.inf,
        rel_spread=float(r75 - r25) / median if median > 0 else math.inf,
        n_runs=int(pooled.size),
        n_rounds=len(rounds),
        round_medians_ms=[float(m) for m in meds],
        remeasured=remeasured,
        wall_ms=float(np.median(walls)),
        cpu_ms=float(np.median(cpus)) if np.all(np.isfinite(cpus)) else math.nan,
        clock=clock,
        estimator=estimator,
        ref_ratio=ratio,
        pair_ref_ms=pair_ms,
    )


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
    clock, est = s.latency_clock, s.latency_estimator
    pairs_in = _as_pairs(items)
    fns = dict(pairs_in)
    rng = rng if rng is not None else np.random.default_rng(s.seed)
    ref_name: str | None = None
    ref_fn: TimeFn | None = None
    if isinstance(reference, str):
        if reference not in fns:
            raise ValueError(f"reference {reference!r} is not one of the items")
        ref_name, ref_fn = reference, fns[reference]
    elif reference is not None:
        ref_name, ref_fn = reference
    if s.paired and ref_fn is None:
        raise ValueError(f"estimator {est!r} is reference-paired: measure() needs a reference")
    if reference_base_ms is not None and not reference_base_ms > 0:
        raise ValueError(f"reference_base_ms must be > 0, got {reference_base_ms}")
    ref_ms: list[float] = []
    ref_wall: list[float] = []
    ref_cpu: list[float] = []
    pairs: dict[str, list[RunTimes]] = {n: [] for n in fns}

    def time_ref() -> None:
        if ref_fn is not None:
            rt = as_run_times(ref_fn(s.warmup, s.runs))
            ref_wall.append(estimate(rt.wall_ms, est))
            ref_cpu.append(estimate(rt.cpu_ms, est))
            ref_ms.append(ref_wall[-1] if clock == "wall" else ref_cpu[-1])

    t_start = time.perf_counter()
    other = OtherLoad()
    other.start()
    runs_for: dict[str, int] = {n: s.runs for n in fns}
    times: dict[str, list[RunTimes]] = {n: [] for n in fns}
    total = len(pairs_in) * s.rounds
    done = 0

    round_other: list[float | None] = []

    def one_round(names: list[str]) -> None:
        nonlocal done
        per_round = OtherLoad()
        per_round.start()
        time_ref()
        order = [names[i] for i in rng.permutation(len(names))]
        for k, name in enumerate(order):
            if s.reference_every and k and k % s.reference_every == 0:
                time_ref()
            t = as_run_times(fns[name](s.warmup, runs_for[name]))
            if len(t) == 0:
                raise ValueError(f"item {name!r} returned no run times")
            if clock == "cpu" and not t.has_cpu:
                raise ValueError(f"item {name!r} has no thread CPU time (a wall-only runner such "
                                 f"as CUDA or adb, or an item returning a bare array); use clock "
                                 f"'wall'")
            times[name].append(t)
            if s.paired:  # the reference at once after the item: same moment of the host
                pairs[name].append(as_run_times(ref_fn(1, s.pair_runs)))
            if s.min_round_ms > 0 and len(times[name]) == 1:
                per_run = float(np.median(t.wall_ms))  # a round's length is wall time
                if per_run > 0:
                    runs_for[name] = max(s.runs, int(math.ceil(s.min_round_ms / per_run)))
            done += 1
            if progress is not None:
                progress(done, total)
        round_other.append(per_round.stop())

    names = [n for n, _ in pairs_in]
    for _ in range(s.rounds):
        one_round(names)
    base = reference_base_ms or (float(np.median(ref_ms)) if ref_ms else None)

    def summary(n: str, remeasured: bool = False) -> ItemResult:
        return summarize(n, times[n], remeasured, clock=clock, estimator=est,
                         paired=pairs[n] if s.paired else None, base_ms=base)

    remeasured: set[str] = set()
    for _ in range(s.max_extra_rounds):
        wide = [n for n in names if summary(n).rel_spread > s.max_rel_spread]
        if not wide:
            break
        remeasured.update(wide)
        total += len(wide)
        one_round(wide)
    time_ref()

    results = {n: summary(n, n in remeasured) for n in names}
    drift = max(ref_ms) / min(ref_ms) if ref_ms and min(ref_ms) > 0 else 1.0
    last_first = ref_ms[-1] / ref_ms[0] if ref_ms and ref_ms[0] > 0 else 1.0
    return MeasureReport(
        results=results,
        settings=s,
        reference=ref_name,
        reference_ms=ref_ms,
        drift_ratio=float(drift),
        drift_last_first=float(last_first),
        wall_s=time.perf_counter() - t_start,
        other_cpu_cores=other.stop(),
        round_other_cpu_cores=round_other,
        reference_wall_ms=ref_wall,
        reference_cpu_ms=ref_cpu,
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
