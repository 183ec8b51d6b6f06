"""Which clock and estimator repeat best: raw two-clock passes and their comparison.

A *pass* times a list of operators in interleaved, shuffled rounds (the protocol of
:func:`timing.measure`) and keeps every run on both clocks. Comparing the latency
of each item between two passes (idle against idle, idle against a pass with every
core busy) for each clock and estimator gives the repeatability figures
``bench/clock_estimator.py`` reports; :func:`pick_estimator` states the choice rule.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

import numpy as np

from space.arch import LayerConfig

from .clocks import CLOCKS, RAW_ESTIMATORS, estimate
from .timing import OtherLoad

__all__ = ["PassRuns", "sample_ops", "time_pass", "item_latency", "compare_passes",
           "cpu_wall_ratio", "latencies", "repeatability_table", "pick_estimator", "PICK_RULE",
           "TIE_TOLERANCE"]

#: ``{item: {"wall_ms": [[run, ...] per round], "cpu_ms": [...]}}``
PassRuns = dict[str, dict[str, list[list[float]]]]

#: the choice rule of :func:`pick_estimator`, in one sentence (recorded with the results)
PICK_RULE = ("score = worst median |difference| of an estimator's latencies over all pairs of "
             "passes (idle vs idle, idle vs busy); lowest score wins; scores within 0.05 points "
             "of the best tie and go to the first of median, p25, p10, min")

#: estimators whose scores differ by less than this (absolute, 0.0005 = 0.05 points of
#: median |difference|) are tied; the tie goes to the earlier one in RAW_ESTIMATORS
TIE_TOLERANCE = 0.0005


def sample_ops(space: str = "anb", n: int = 24, seed: int = 0,
               with_reference: bool = True) -> list[tuple[str, LayerConfig]]:
    """``n`` distinct operator configurations of ``space`` (seeded), plus the reference op."""
    from space.spaces import get_space

    from ..tables import REFERENCE_OP

    ops = get_space(space).operator_configs()
    if not 1 <= n <= len(ops):
        raise ValueError(f"n must be in 1..{len(ops)} for space {space!r}, got {n}")
    pick = sorted(np.random.default_rng(seed).choice(len(ops), size=n, replace=False).tolist())
    items = [(ops[i].key(), ops[i]) for i in pick]
    if with_reference and REFERENCE_OP.key() not in {k for k, _ in items}:
        items.append(("reference", REFERENCE_OP))
    return items


def time_pass(profile: str, items: Sequence[tuple[str, LayerConfig]], *, rounds: int = 5,
              runs: int = 40, warmup: int = 10, seed: int = 0,
              cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Time ``items`` (name, op config) in ``rounds`` shuffled rounds; every run on both clocks.

    Returns ``{"runs": PassRuns, "other_cpu_cores", "wall_s", "pinned_core", ...}``. The
    process pins itself per the profile (and stays pinned: run a pass in its own process).
    """
    from space.build import build_op, op_input_shape

    from .export import ExportCache
    from .profiles import make_runner

    if rounds < 1 or runs < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, runs >= 1, warmup >= 0; got {rounds}, {runs}, {warmup}")
    runner = make_runner(profile, ExportCache(cache_dir))
    handles = {name: runner.load(build_op(lc), op_input_shape(lc), name=name[:60]) for name, lc in items}
    out: PassRuns = {name: {"wall_ms": [], "cpu_ms": []} for name, _ in items}
    rng = np.random.default_rng(seed)
    names = [name for name, _ in items]
    t0 = time.perf_counter()
    load = OtherLoad()
    load.start()
    for _ in range(rounds):
        for i in rng.permutation(len(names)):
            rt = runner.time_clocks(handles[names[i]], warmup, runs)
            out[names[i]]["wall_ms"].append([round(float(v), 4) for v in rt.wall_ms])
            out[names[i]]["cpu_ms"].append([round(float(v), 4) for v in rt.cpu_ms])
    return {"runs": out, "other_cpu_cores": load.stop(), "wall_s": time.perf_counter() - t0,
            "pinned_core": runner.pinned_core, "profile": profile, "rounds": rounds,
            "runs_per_round": runs, "warmup": warmup}


def item_latency(rounds_ms: Sequence[Sequence[float]], estimator: str) -> float:
    """The protocol's latency: ``estimator`` over each round's runs, median over rounds."""
    return float(np.median([estimate(r, estimator) for r in rounds_ms]))


def _latencies(p: PassRuns, clock: str, estimator: str) -> dict[str, float]:
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    return {k: item_latency(v[f"{clock}_ms"], estimator) for k, v in p.items()}


def compare_passes(a: PassRuns, b: PassRuns, clock: str, estimator: str,
                   reference: str | None = None) -> dict[str, float]:
    """Per-item |latency_b / latency_a - 1| summarised: median, share within 1/2/5 %.

    With ``reference`` (an item name) each latency is first divided by that pass's
    reference latency, which takes out a slowdown common to the whole pass (the
    reference item itself is then left out).
    """
    la, lb = _latencies(a, clock, estimator), _latencies(b, clock, estimator)
    common = sorted(set(la) & set(lb))
    if reference is not None:
        if reference not in common:
            raise ValueError(f"reference item {reference!r} is not in both passes")
        ra, rb = la[reference], lb[reference]
        common = [k for k in common if k != reference]
        la = {k: v / ra for k, v in la.items()}
        lb = {k: v / rb for k, v in lb.items()}
    if not common:
        raise ValueError("the two passes share no item")
    rel = np.abs(np.array([lb[k] / la[k] - 1.0 for k in common]))
    return {"n": len(common), "median_abs_diff": float(np.median(rel)),
            "within_1pct": float(np.mean(rel <= 0.01)), "within_2pct": float(np.mean(rel <= 0.02)),
            "within_5pct": float(np.mean(rel <= 0.05))}


def cpu_wall_ratio(p: PassRuns, estimator: str = "median") -> dict[str, float]:
    """Per-item cpu/wall latency ratio of one pass (median, 5th, 95th percentile) and the
    median cpu - wall difference in microseconds (the cost of reading the thread clock)."""
    cpu, wall = _latencies(p, "cpu", estimator), _latencies(p, "wall", estimator)
    r = np.array([cpu[k] / wall[k] for k in sorted(cpu)])
    d = np.array([cpu[k] - wall[k] for k in sorted(cpu)]) * 1e3
    return {"median": float(np.median(r)), "p5": float(np.percentile(r, 5)),
            "p95": float(np.percentile(r, 95)), "median_diff_us": float(np.median(d))}


def latencies(passes: Mapping[str, PassRuns]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{pass: {clock: {estimator: {item: latency_ms}}}}`` for every clock and estimator."""
    return {name: {c: {e: _latencies(p, c, e) for e in RAW_ESTIMATORS} for c in CLOCKS}
            for name, p in passes.items()}


def repeatability_table(passes: Mapping[str, PassRuns], pairs: Sequence[tuple[str, str]],
                        reference: str | None = None) -> list[dict[str, Any]]:
    """One row per (clock, estimator, pair of passes) with :func:`compare_passes` figures.

    With ``reference`` each row also has ``ref_norm_median_abs_diff`` and
    ``ref_norm_within_2pct``: the same after dividing by the pass's reference latency.
    """
    rows = []
    for clock in CLOCKS:
        for est in RAW_ESTIMATORS:
            for a, b in pairs:
                row = {"clock": clock, "estimator": est, "pair": f"{a} vs {b}",
                       **compare_passes(passes[a], passes[b], clock, est)}
                if reference is not None:
                    n = compare_passes(passes[a], passes[b], clock, est, reference)
                    row.update(ref_norm_median_abs_diff=n["median_abs_diff"],
                               ref_norm_within_2pct=n["within_2pct"])
                rows.append(row)
    return rows


def pick_estimator(rows: Sequence[Mapping[str, Any]], clock: str = "cpu") -> tuple[str, dict[str, float]]:
    """The estimator that repeats best on ``clock``; returns (estimator, score per estimator).

    Rule: an estimator's score is its worst (largest) raw median |difference| over all
    pairs of passes in ``rows`` (idle vs idle and idle vs busy alike), so it must
    repeat both on a quiet machine and under load. The lowest score wins; scores
    within :data:`TIE_TOLERANCE` of the best are tied and the tie goes to the first
    of them in RAW_ESTIMATORS order (median, p25, p10, min: the more central the
    statistic, the less it hangs on a few runs).
    """
    score = {est: max(r["median_abs_diff"] for r in rows if r["clock"] == clock and r["estimator"] == est)
             for est in RAW_ESTIMATORS if any(r["clock"] == clock and r["estimator"] == est for r in rows)}
    if not score:
        raise ValueError(f"no rows for clock {clock!r}")
    best = min(score.values())
    return next(e for e in RAW_ESTIMATORS if e in score and score[e] <= best + TIE_TOLERANCE), score
