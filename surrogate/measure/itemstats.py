"""Latency statistics of one item from its per-round run times (:func:`summarize`).

Each round is reduced by an estimator on each clock; the latency is the median of the
round estimates. With a ``+ref`` estimator each round is divided by the reference's
paired runs and scaled by a base (:mod:`.timing`'s module docstring).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from .clocks import CLOCKS, DEFAULT_ESTIMATOR, RunTimes, as_run_times, estimate, split_estimator

__all__ = ["ItemResult", "summarize"]


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
