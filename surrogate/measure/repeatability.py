"""Which clock and estimator repeat best: raw two-clock passes and their comparison.

A *pass* times a list of operators in interleaved, shuffled rounds (the protocol of
:func:`timing.measure`) and keeps every run on both clocks. Comparing the latency
of each item between two passes (idle against idle, idle against a pass with every
core busy) for each clock and estimator gives the repeatability figures
``bench/clock_estimator.py`` reports; :func:`pick_estimator` states the choice rule.

*Rounds curve* (``bench/rounds_curve.py``): :func:`time_rounds` times whole networks
with many rounds under a table's protocol and keeps every round's estimate (resumable
per chunk); :func:`rounds_curve` says how two such passes agree when each network's
latency is the median of only k rounds, for growing k, and what each k costs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from space.arch import LayerConfig

from ..atomic import write_json_atomic
from .clocks import CLOCKS, RAW_ESTIMATORS, as_run_times, estimate, split_estimator
from .jobs import now_iso
from .timing import MeasureSettings, OtherLoad, measure

__all__ = ["PassRuns", "sample_ops", "time_pass", "item_latency", "compare_passes",
           "cpu_wall_ratio", "latencies", "repeatability_table", "pick_estimator", "PICK_RULE",
           "TIE_TOLERANCE", "CURVE_KS", "ROUNDS_PASS_FORMAT", "rounds_protocol", "time_rounds",
           "pass_path", "pass_rounds", "pooled_labels", "rounds_curve", "curve_conclusion"]

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


# -- rounds curve: repeatability of network latencies against the number of rounds ---------
#: numbers of rounds the curve is evaluated at (plus every pass's full count)
CURVE_KS: tuple[int, ...] = (1, 2, 3, 5, 8, 12, 20)
#: ``format`` field of a :func:`time_rounds` pass file
ROUNDS_PASS_FORMAT = "rounds-pass/1"


def pass_path(folder: str | os.PathLike, profile: str, space: str, label: str) -> Path:
    """Where a rounds pass of (profile, space) is kept: ``rounds_curve_<profile>_<space>_pass-<label>.json``."""
    return Path(folder) / f"rounds_curve_{profile}_{space}_pass-{label}.json"


def rounds_protocol(base: str | os.PathLike, n: int, rounds: int
                    ) -> tuple[MeasureSettings, float | None, list[str]]:
    """A table's protocol with ``rounds`` rounds and no extra ones, its base, its first ``n`` archs.

    Returns ``(settings, reference_base_ms, arch strings)``; the base is the table's
    ``reference_base_ms`` (None for an estimator without ``+ref``).
    """
    from ..tables import Table, table_timing
    from .retime import table_settings

    if n < 1 or rounds < 1:
        raise ValueError(f"rounds_protocol: need n >= 1 and rounds >= 1, got n={n}, rounds={rounds}")
    rows = Table.models(base).read()
    if len(rows) < n:
        raise ValueError(f"{base} has {len(rows)} rows; the rounds curve asks for the first {n}")
    settings = dataclasses.replace(table_settings(base), rounds=rounds, max_extra_rounds=0,
                                   max_drift=0.0)
    base_ms = table_timing(base).get("reference_base_ms")
    if settings.paired and not base_ms:
        raise ValueError(f"{base}: estimator {settings.estimator!r} needs the provenance's "
                         f"reference_base_ms, which is missing")
    return settings, (float(base_ms) if base_ms else None), [r["arch"] for r in rows[:n]]


def _open_pass(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The pass file at ``path`` (resuming: its header must match) or a new one."""
    if not path.is_file():
        return {**header, "networks": {}, "chunks": [], "created": now_iso()}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); delete it to "
                         f"start the pass again") from None
    for key, want in header.items():
        if data.get(key) != want:
            raise ValueError(f"{path}: cannot resume, its {key!r} is {data.get(key)!r} but this "
                             f"pass asks for {want!r}; use another file or delete it")
    return data


def _parse_archs(archs: Sequence[str]) -> dict[str, Any]:
    """``{arch string: parsed arch}``; a ValueError names the first that does not parse."""
    from space.blockstring import parse_arch

    parsed = {}
    for i, s in enumerate(archs):
        try:
            parsed[s] = parse_arch(s)
        except ValueError as exc:
            raise ValueError(f"time_rounds: arch #{i} ({s[:60]!r}) does not parse: {exc}") from None
    return parsed


def _rounds_settings(profile: str, settings: MeasureSettings, reference_base_ms: float | None,
                     chunk: int) -> tuple[Any, MeasureSettings]:
    """``(profile, settings)`` of a rounds pass: no extra rounds, the profile's clock."""
    from .jobs import resolve_clock
    from .profiles import as_profile

    if chunk < 1:
        raise ValueError(f"time_rounds: chunk must be >= 1, got {chunk}")
    if settings.max_extra_rounds:
        settings = dataclasses.replace(settings, max_extra_rounds=0)
    prof, settings = resolve_clock(as_profile(profile), settings)
    if settings.paired and not (reference_base_ms and reference_base_ms > 0):
        raise ValueError(f"time_rounds: estimator {settings.estimator!r} needs a positive "
                         f"reference_base_ms, got {reference_base_ms!r}")
    return prof, settings


def _load_chunk(runner: Any, part: Sequence[str], parsed: Mapping[str, Any], clock: str,
                raw_est: str) -> tuple[dict[str, Callable], dict[str, list[float]], float]:
    """Load a chunk's networks: ``(items, {arch: raw estimates, filled as timed}, load_s)``."""
    from .jobs import _module_for

    t_load = time.perf_counter()
    fns, raw = {}, {}
    for s in part:
        timer = runner.timer(runner.load(*_module_for("model", parsed[s]), name=s[:60]))
        raw[s] = []

        def item(w: int, r: int, _t=timer, _sink=raw[s]):
            rt = as_run_times(_t(w, r))
            _sink.append(estimate(rt.clock(clock), raw_est))
            return rt

        fns[s] = item
    return fns, raw, time.perf_counter() - t_load


def _time_chunk(data: dict[str, Any], runner: Any, ref_fn: Callable, part: Sequence[str],
                parsed: Mapping[str, Any], done: int, *, settings: MeasureSettings,
                reference_base_ms: float | None, seed: int) -> None:
    """Time one chunk of networks and record its networks and chunk entry in ``data``."""
    raw_est, _ = split_estimator(settings.latency_estimator)
    fns, raw, load_s = _load_chunk(runner, part, parsed, settings.latency_clock, raw_est)
    started = now_iso()
    rep = measure(fns, settings, reference=("__reference__", ref_fn),
                  rng=np.random.default_rng(seed * 100003 + done),
                  reference_base_ms=reference_base_ms)
    per_round = rep.wall_s / (len(part) * settings.rounds)
    for s in part:
        data["networks"][s] = {"rounds_ms": rep.results[s].round_medians_ms,
                               "raw_ms": raw[s], "seconds_per_round": per_round,
                               "load_s": load_s / len(part)}
    data["chunks"].append({"first": done, "n": len(part), "started": started,
                           "finished": now_iso(), "wall_s": rep.wall_s, "load_s": load_s,
                           "other_cpu_cores": rep.other_cpu_cores,
                           "reference_ms_median": float(np.median(rep.reference_ms)),
                           "drift_ratio": rep.drift_ratio,
                           "pinned_core": runner.pinned_core})


def time_rounds(profile: str, archs: Sequence[str], path: str | os.PathLike, *,
                settings: MeasureSettings, reference_base_ms: float | None = None,
                chunk: int = 16, seed: int = 0, label: str = "",
                cache_dir: str | os.PathLike | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Time networks (arch strings) with ``settings.rounds`` rounds each; keep every round.

    Per chunk of ``chunk`` networks one :func:`timing.measure` call (the tables' protocol:
    interleaved shuffled rounds, the reference operator paired with every round under a
    ``+ref`` estimator, ratios scaled by ``reference_base_ms``), no extra rounds. After
    each chunk the pass file ``path`` is rewritten atomically with, per network,
    ``rounds_ms`` (the round estimates, as in ``ItemResult.round_medians_ms``), ``raw_ms``
    (the raw estimator on the clock, unpaired), ``seconds_per_round`` (the chunk's wall time
    per network and round, reference blocks included) and ``load_s``. A killed pass
    resumes from the file without redoing finished networks. The process is pinned
    per the profile while timing and unpinned after. Returns the pass data.
    """
    from .export import ExportCache
    from .jobs import _module_for
    from .profiles import make_runner
    from ..tables import REFERENCE_OP

    prof, settings = _rounds_settings(profile, settings, reference_base_ms, chunk)
    parsed = _parse_archs(archs)
    path = Path(path)
    header = {"format": ROUNDS_PASS_FORMAT, "profile": prof.name, "label": label,
              "rounds": settings.rounds, "settings": settings.as_dict(),
              "reference_base_ms": reference_base_ms if settings.paired else None, "seed": seed}
    data = _open_pass(path, header)
    todo = [s for s in dict.fromkeys(archs) if s not in data["networks"]]
    if not todo:
        return data
    runner = make_runner(prof, ExportCache(cache_dir))
    runner.ensure_pinned()
    done = len(data["networks"])
    total = done + len(todo)
    try:
        ref_fn = runner.timer(runner.load(*_module_for("op", REFERENCE_OP), name="reference"))
        for c0 in range(0, len(todo), chunk):
            part = todo[c0: c0 + chunk]
            _time_chunk(data, runner, ref_fn, part, parsed, done, settings=settings,
                        reference_base_ms=reference_base_ms, seed=seed)
            done += len(part)
            data["updated"] = now_iso()
            write_json_atomic(path, data)
            if progress is not None:
                progress(done, total)
    finally:
        runner.unpin()
    return data


def pass_rounds(data: Mapping[str, Any], key: str = "rounds_ms") -> dict[str, list[float]]:
    """``{arch: round values}`` of a :func:`time_rounds` pass (``key``: rounds_ms or raw_ms)."""
    if data.get("format") != ROUNDS_PASS_FORMAT:
        raise ValueError(f"not a rounds pass (format {data.get('format')!r}, expected "
                         f"{ROUNDS_PASS_FORMAT!r})")
    return {a: list(v[key]) for a, v in data["networks"].items()}


def pooled_labels(passes: Sequence[Mapping[str, Any]], key: str = "rounds_ms") -> dict[str, float]:
    """Low-noise latency labels: per network, the median of every round of every pass.

    Only networks present in all passes count. The passes must share their settings
    and reference base (else their rounds are not on one scale): a ValueError says which.
    """
    if not passes:
        raise ValueError("pooled_labels needs at least one rounds pass")
    first = passes[0]
    for p in passes[1:]:
        if p.get("settings") != first.get("settings") or p.get("reference_base_ms") != first.get(
                "reference_base_ms"):
            raise ValueError(f"passes {first.get('label')!r} and {p.get('label')!r} were timed with "
                             f"different settings or reference base; their rounds do not pool")
    rounds = [pass_rounds(p, key) for p in passes]
    common = set(rounds[0]).intersection(*rounds[1:])
    return {a: float(np.median(np.concatenate([r[a] for r in rounds]))) for a in sorted(common)}


def _agreement(la: np.ndarray, lb: np.ndarray) -> dict[str, float]:
    """|lb/la - 1| figures, raw and after dividing out the median ratio."""
    ratio = lb / la
    shift = float(np.median(ratio))
    out = {"median_ratio": shift}
    for prefix, rel in (("", np.abs(ratio - 1)), ("shifted_", np.abs(ratio / shift - 1))):
        out[f"{prefix}median_abs_diff"] = float(np.median(rel))
        out[f"{prefix}p95_abs_diff"] = float(np.percentile(rel, 95))
        for pct in (2, 5, 10):
            out[f"{prefix}within_{pct}pct"] = float(np.mean(rel <= pct / 100))
    return out


def _as_matrix(rounds: Mapping[str, Sequence[float]], names: list[str], label: str) -> np.ndarray:
    rows = []
    for n in names:
        x = np.asarray(rounds[n], dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"pass {label} network {n[:60]!r}: expected a 1-D list of round "
                             f"estimates, got shape {x.shape}")
        if not np.all(np.isfinite(x)) or np.any(x <= 0):
            raise ValueError(f"pass {label} network {n[:60]!r}: round estimates must be finite "
                             f"and > 0, got {x[~(np.isfinite(x) & (x > 0))][:3].tolist()}")
        rows.append(x)
    r = min(x.size for x in rows)
    return np.stack([x[:r] for x in rows])


def rounds_curve(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
                 ks: Sequence[int] = CURVE_KS, *, seconds_per_round: float | None = None,
                 labels: tuple[str, str] = ("a", "b")) -> list[dict[str, Any]]:
    """Agreement of two passes when a network's latency is the median of k rounds, per k.

    ``a``, ``b``: ``{network: [round estimate, ...]}`` (common networks only; the rounds
    used are the first R, R the fewest any network has). For each k in ``ks`` (those
    <= R, plus R) the R rounds are cut into R//k disjoint blocks of k; block j of pass a
    is compared with block j of pass b and the figures (median, p95 |b/a - 1|, share
    within 2/5/10 %, median ratio, and ``shifted_*`` the same after dividing out the
    median ratio) are averaged over the blocks (``first_*``: block 0 alone, i.e. the
    first k rounds). ``within_pass_*``: blocks 2i and 2i+1 of the same pass compared
    (both passes pooled; absent when R//k < 2): what repeatability would be with no
    difference between processes. ``minutes_per_1000``: k * ``seconds_per_round``
    * 1000 / 60, the timing cost of 1,000 networks at k rounds.
    """
    for label, p in zip(labels, (a, b)):
        if not isinstance(p, Mapping) or not p:
            raise ValueError(f"pass {label}: expected a non-empty mapping network -> round "
                             f"estimates, got {type(p).__name__}")
    names = sorted(set(a) & set(b))
    if not names:
        raise ValueError(f"passes {labels[0]} and {labels[1]} share no network")
    ma, mb = _as_matrix(a, names, labels[0]), _as_matrix(b, names, labels[1])
    r = min(ma.shape[1], mb.shape[1])
    ma, mb = ma[:, :r], mb[:, :r]
    for k in ks:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks: every k must be an integer >= 1, got {k!r}")
    if seconds_per_round is not None and not seconds_per_round > 0:
        raise ValueError(f"seconds_per_round must be > 0, got {seconds_per_round!r}")
    out = []
    for k in sorted({int(k) for k in ks if k <= r} | {r}):
        nb = r // k
        blocks = [(np.median(ma[:, j * k:(j + 1) * k], axis=1),
                   np.median(mb[:, j * k:(j + 1) * k], axis=1)) for j in range(nb)]
        per = [_agreement(x, y) for x, y in blocks]
        row: dict[str, Any] = {"k": k, "n": len(names), "blocks": nb,
                               **{f: float(np.mean([p[f] for p in per])) for f in per[0]},
                               "first_median_abs_diff": per[0]["median_abs_diff"],
                               "first_within_5pct": per[0]["within_5pct"],
                               "first_median_ratio": per[0]["median_ratio"]}
        if nb >= 2:
            within = [_agreement(blocks[i][side], blocks[i + 1][side])
                      for side in (0, 1) for i in range(0, nb - 1, 2)]
            row["within_pass_median_abs_diff"] = float(np.mean([w["median_abs_diff"] for w in within]))
            row["within_pass_within_5pct"] = float(np.mean([w["within_5pct"] for w in within]))
        if seconds_per_round is not None:
            row["minutes_per_1000"] = k * seconds_per_round * 1000 / 60
        out.append(row)
    return out


def curve_conclusion(rows: Sequence[Mapping[str, Any]], median_target: float = 0.015,
                     within5_target: float = 0.95, prefix: str = "") -> dict[str, Any]:
    """The smallest k of a :func:`rounds_curve` whose (``prefix``ed) figures meet both targets.

    ``{"k": k or None, "rounds": R, "minutes_per_1000": ...}``; ``prefix`` ``shifted_``
    judges the figures with the global ratio divided out.
    """
    if not rows:
        raise ValueError("curve_conclusion: no rows (run rounds_curve first)")
    ok = [r for r in rows if r[f"{prefix}median_abs_diff"] <= median_target
          and r[f"{prefix}within_5pct"] >= within5_target]
    best = min(ok, key=lambda r: r["k"]) if ok else None
    return {"k": best["k"] if best else None, "rounds": max(r["k"] for r in rows),
            "minutes_per_1000": best.get("minutes_per_1000") if best else None,
            "median_target": median_target, "within5_target": within5_target, "prefix": prefix}
