"""Two clocks per run (wall, thread CPU), per-round estimators, and one clock per table."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from space.arch import LayerConfig
from surrogate.measure import timing
from surrogate.measure.clocks import RAW_ESTIMATORS, RunTimes, as_run_times, estimate
from surrogate.measure.profiles import PROFILES, DeviceProfile, get_profile
from surrogate.measure.repeatability import compare_passes, item_latency, pick_estimator
from surrogate.tables import (CLOCK_DIVERGENCE, OPS_COLUMNS, Table, TableError, clock_diverged,
                              op_row_key, validate_table)


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


needs_ort = pytest.mark.skipif(not (_has("onnxruntime") and _has("onnx") and _has("torch")),
                               reason="onnxruntime/onnx/torch not installed")
needs_litert = pytest.mark.skipif(
    not (_has("ai_edge_litert") or _has("tflite_runtime")),  # .tflite from the direct writer
    reason="ai-edge-litert not installed (optional runtime)")

SMALL = LayerConfig(op="mbconv", h=14, w=14, in_ch=16, out_ch=16, kernel=3, stride=1, expand=3,
                    se=0.0, skip="identity", groups=1, act="relu")
#: runs of several ms, longer than a scheduler slice: a competing process is switched in
#: mid-run (shorter runs tend to lose the core at the thread-clock read, between runs)
LONG = LayerConfig(op="mbconv", h=112, w=112, in_ch=32, out_ch=32, kernel=5, stride=1, expand=6,
                   se=0.0, skip="identity", groups=1, act="relu")


@pytest.fixture(autouse=True)
def _restore_affinity():
    from surrogate.measure.pinning import pin_process

    mask = os.sched_getaffinity(0)
    yield
    pin_process(mask)


# ---------------------------------------------------------------- estimators


def test_estimators_on_synthetic_runs():
    x = np.array([5.0, 1.0, 2.0, 3.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0, 11.0])
    assert estimate(x, "median") == 6.0
    assert estimate(x, "p25") == pytest.approx(np.percentile(x, 25)) == pytest.approx(3.5)
    assert estimate(x, "p10") == pytest.approx(2.0)
    assert estimate(x, "min") == 1.0
    assert math.isnan(estimate([1.0, np.nan], "min"))
    with pytest.raises(ValueError, match="estimator must be one of"):
        estimate(x, "mean")
    with pytest.raises(ValueError, match="RunTimes"):
        RunTimes(np.ones(3), np.ones(2))
    rt = as_run_times(np.array([1.0, 2.0]))  # an old-style item: wall only
    assert rt.wall_ms.tolist() == [1.0, 2.0] and not rt.has_cpu and np.isnan(rt.cpu_ms).all()


def test_summarize_per_round_estimator_then_median_over_rounds():
    rounds = [RunTimes(np.array([2.0, 3.0, 4.0, 9.0]), np.array([1.0, 1.5, 2.0, 2.5])),
              RunTimes(np.array([2.2, 3.0, 5.0, 9.0]), np.array([1.1, 1.4, 2.0, 2.6])),
              RunTimes(np.array([9.0, 9.0, 9.0, 9.0]), np.array([1.0, 1.6, 2.0, 2.4]))]
    for est in RAW_ESTIMATORS:
        r = timing.summarize("x", rounds, clock="cpu", estimator=est)
        per_round_cpu = [estimate(rt.cpu_ms, est) for rt in rounds]
        per_round_wall = [estimate(rt.wall_ms, est) for rt in rounds]
        assert r.median_ms == pytest.approx(np.median(per_round_cpu)) == r.cpu_ms == r.latency_ms
        assert r.wall_ms == pytest.approx(np.median(per_round_wall))
        assert (r.clock, r.estimator, r.n_rounds, r.n_runs) == ("cpu", est, 3, 12)
        assert r.round_medians_ms == pytest.approx(per_round_cpu)
    w = timing.summarize("x", rounds, clock="wall", estimator="min")
    assert w.median_ms == w.wall_ms == pytest.approx(2.2)
    with pytest.raises(ValueError, match="no thread CPU time"):
        timing.summarize("y", [np.array([1.0, 2.0])], clock="cpu")
    legacy = timing.summarize("y", [np.array([1.0, 2.0, 3.0])], estimator="median")  # bare array: wall
    assert legacy.median_ms == 2.0 and math.isnan(legacy.cpu_ms) and legacy.clock == "wall"
    default = timing.summarize("y", [np.array([1.0, 2.0, 3.0])])
    assert default.estimator == timing.DEFAULT_ESTIMATOR and default.median_ms == estimate(
        np.array([1.0, 2.0, 3.0]), timing.DEFAULT_ESTIMATOR)


def test_measure_on_the_cpu_clock_and_drift_judged_on_it():
    calls = {"n": 0}

    def item(warmup, runs):  # CPU steady at 1.0; wall 1.0 or 2.0 (a neighbour on the core)
        calls["n"] += 1
        return RunTimes(np.full(runs, 1.0 + (calls["n"] % 2)), np.full(runs, 1.0))

    def ref(warmup, runs):  # wall reference drifts by 60%, CPU by nothing
        return RunTimes(np.full(runs, 1.6), np.full(runs, 0.5))

    s = timing.MeasureSettings(warmup=0, runs=3, rounds=4, clock="cpu", estimator="p25",
                               max_drift=0.05, drift_retries=2, reference_every=0)
    guard = timing.DriftGuard(s, baseline_ms=0.5)
    rep = guard.measure_chunk({"a": item}, ("ref", ref), seed=0)
    r = rep.results["a"]
    assert r.median_ms == 1.0 and not r.remeasured  # the wall spread does not trigger re-measuring
    assert r.wall_ms == pytest.approx(1.5) and r.estimator == "p25"
    assert rep.reference_ms == [0.5] * len(rep.reference_ms) and set(rep.reference_wall_ms) == {1.6}
    assert guard.retries == 0  # the wall drift is not the table's clock
    with pytest.raises(ValueError, match="no thread CPU time"):
        timing.measure({"old": lambda w, n: np.ones(n)}, timing.MeasureSettings(clock="cpu"))
    old = timing.measure({"old": lambda w, n: np.ones(n)}, timing.MeasureSettings(rounds=1, runs=2))
    assert old.results["old"].clock == "wall" and math.isnan(old.results["old"].cpu_ms)


def test_settings_and_profile_clock_validation():
    with pytest.raises(ValueError, match=r"MeasureSettings.estimator must be one of .*'mean'"):
        timing.MeasureSettings(estimator="mean")
    with pytest.raises(ValueError, match="MeasureSettings.clock"):
        timing.MeasureSettings(clock="gpu")
    assert timing.MeasureSettings().latency_estimator == timing.DEFAULT_ESTIMATOR == "min"  # bench/clock_estimator.py
    assert timing.MeasureSettings().estimator is None  # table jobs take the profile's
    assert get_profile("cpu-litert").estimator == "min+ref" and get_profile("android-adb").estimator == "min"
    assert {n: p.clock for n, p in PROFILES.items()} == {
        "cpu-litert": "cpu", "cpu-onnxruntime": "cpu", "cpu-torch": "cpu", "cuda-torch": "wall",
        "android-adb": "wall"}
    with pytest.raises(ValueError, match="clock 'cpu' needs a runtime"):
        DeviceProfile(name="x", runtime="torch-cuda", clock="cpu")
    with pytest.raises(ValueError, match="clock must be one of"):
        get_profile("cpu-torch", clock="gpu")
    with pytest.raises(ValueError, match="threads=4 use clock 'wall'"):
        get_profile("cpu-litert", threads=4)
    assert get_profile("cpu-litert", threads=4, clock="wall").clock == "wall"


def test_repeatability_helpers_and_pick_rule():
    a = {"x": {"wall_ms": [[1.0, 1.0, 5.0]] * 3, "cpu_ms": [[1.0, 1.0, 1.2]] * 3}}
    b = {"x": {"wall_ms": [[1.0, 2.0, 5.0]] * 3, "cpu_ms": [[1.005, 1.005, 1.2]] * 3}}
    assert item_latency(a["x"]["wall_ms"], "median") == 1.0
    c = compare_passes(a, b, "cpu", "median")
    assert c["median_abs_diff"] == pytest.approx(0.005) and c["within_1pct"] == 1.0
    assert compare_passes(a, b, "wall", "median")["within_5pct"] == 0.0
    rows = [{"clock": "cpu", "estimator": e, "median_abs_diff": d}
            for e, d in [("median", 0.010), ("p25", 0.0098), ("p10", 0.02), ("min", 0.03)]]
    assert pick_estimator(rows)[0] == "median"  # within the tie tolerance: the earlier one
    rows[0]["median_abs_diff"] = 0.012
    assert pick_estimator(rows)[0] == "p25"


# --------------------------------------------------------------------- runners


def _ort_runner(tmp_path):
    from space.build import build_op, op_input_shape
    from surrogate.measure.export import ExportCache
    from surrogate.measure.profiles import make_runner

    r = make_runner("cpu-onnxruntime", ExportCache(tmp_path))
    return r, build_op, op_input_shape


@needs_ort
def test_ort_runner_records_both_clocks_and_they_agree_on_a_quiet_core(tmp_path):
    r, build_op, op_input_shape = _ort_runner(tmp_path)
    h = r.load(build_op(SMALL), op_input_shape(SMALL))
    rt = r.time_clocks(h, warmup=5, runs=30)
    assert isinstance(rt, RunTimes) and len(rt) == 30 and rt.has_cpu
    assert np.all(rt.wall_ms > 0) and np.all(rt.cpu_ms > 0)
    # minima: the least interrupted run of each clock, so a shared host does not decide it
    assert 0.8 < np.min(rt.cpu_ms) / np.min(rt.wall_ms) < 1.2
    assert r.time(h, warmup=1, runs=4).shape == (4,)  # the profile's clock, old return type
    assert isinstance(r.timer(h)(1, 3), RunTimes)


@needs_litert
def test_litert_runner_records_both_clocks(tmp_path):  # < 1 s with the in-house .tflite writer
    from space.build import build_op, op_input_shape
    from surrogate.measure.export import ExportCache
    from surrogate.measure.profiles import make_runner

    r = make_runner("cpu-litert", ExportCache(tmp_path))
    h = r.load(build_op(SMALL), op_input_shape(SMALL))
    rt = r.time_clocks(h, warmup=5, runs=30)
    assert len(rt) == 30 and rt.has_cpu and np.all(rt.wall_ms > 0)
    # minima: the least interrupted run of each clock, so a shared host does not decide it
    assert 0.8 < np.min(rt.cpu_ms) / np.min(rt.wall_ms) < 1.2


def _busy_phase(r, h):
    """Time `h` while a busy-loop process shares the timing core; returns its RunTimes."""
    spin = subprocess.Popen([sys.executable, "-S", "-c", "print('go', flush=True)\nwhile 1: pass"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout.readline().strip() == "go"  # started: spinning from here on
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:  # spin too (a sleep would earn scheduler credit)
            pass
        return r.time_clocks(h, warmup=3, runs=30)
    finally:
        spin.kill()
        spin.wait()


@needs_ort
def test_busy_loop_on_the_core_inflates_wall_not_cpu(tmp_path):
    """A spinner on the timing core inflates wall time; the thread's CPU time moves far less.

    The host itself is shared (CI, other tenants), so each attempt times quiet, busy,
    quiet and compares the busy phase with the mean of the quiet phases around it: a
    relative property with margin, not an absolute time. A runner that recorded wall time
    as CPU time fails every attempt. Attempts in which the scheduler barely let the
    spinner run show nothing either way; if all three are like that the test skips.
    """
    r, build_op, op_input_shape = _ort_runner(tmp_path)
    h = r.load(build_op(LONG), op_input_shape(LONG))
    r.ensure_pinned()  # the spinner started below inherits the timing core
    seen = []
    for _ in range(3):
        q0 = r.time_clocks(h, warmup=3, runs=30)
        b = _busy_phase(r, h)
        q1 = r.time_clocks(h, warmup=3, runs=30)
        # wall: totals, since time slices land between runs too; cpu: per-run medians
        wall = b.wall_ms.sum() / ((q0.wall_ms.sum() + q1.wall_ms.sum()) / 2)
        cpu = np.median(b.cpu_ms) / ((np.median(q0.cpu_ms) + np.median(q1.cpu_ms)) / 2)
        seen.append((round(float(wall), 3), round(float(cpu), 3)))
        if wall > 1.3 and cpu - 1 < 0.5 * (wall - 1):
            return
    shared = [(w, c) for w, c in seen if w > 1.3]
    if not shared:
        pytest.skip(f"the scheduler did not share the timing core (wall, cpu ratios: {seen})")
    raise AssertionError(f"CPU time inflated like wall time under a busy loop: {seen}")


# ---------------------------------------------------------------------- tables


def _row(lc, clock="cpu", estimator="median", wall=1.0, cpu=1.0):
    lat = cpu if clock == "cpu" else wall
    return {**op_row_key(lc), "median_ms": lat, "wall_ms": wall, "cpu_ms": cpu, "clock": clock,
            "estimator": estimator, "clock_diverged": clock_diverged(wall, cpu), "mean_ms": lat,
            "std_ms": 0.1, "p10_ms": 0.9, "p90_ms": 1.1, "iqr_ms": 0.1, "cv": 0.1,
            "rel_spread": 0.01, "n_runs": 30, "n_rounds": 3, "remeasured": False, "ref_ms": 0.5,
            "measured_at": "2026-01-01T00:00:00+00:00"}


def _ops(n=3):
    from space import get_space

    return get_space("nasbench-macro").operator_configs()[:n]


def test_clock_diverged_threshold():
    assert CLOCK_DIVERGENCE == 0.10
    assert clock_diverged(1.2, 1.0) and clock_diverged(0.85, 1.0)
    assert not clock_diverged(1.09, 1.0) and not clock_diverged(1.0, math.nan)
    assert clock_diverged(1.06, 1.0, threshold=0.05)


def test_table_refuses_a_second_clock_or_estimator(tmp_path):
    ops = _ops()
    t = Table.ops(tmp_path / "m_ops.csv")
    t.append([_row(ops[0], wall=1.3, cpu=1.0)])
    rows = t.read()
    assert rows[0]["clock"] == "cpu" and rows[0]["clock_diverged"] is True
    with pytest.raises(ValueError, match=r"m_ops.csv.*clock 'cpu' and estimator 'median'.*"
                                         r"clock 'wall' and estimator 'median'.*--estimator"):
        t.append([_row(ops[1], clock="wall")])
    with pytest.raises(ValueError, match=r"m_ops.csv.*estimator 'p10'.*new file"):
        t.append([_row(ops[1], estimator="p10")])
    with pytest.raises(ValueError, match="mix"):
        Table.ops(tmp_path / "n_ops.csv").append([_row(ops[0]), _row(ops[1], estimator="min")])
    t.append([_row(ops[1])])
    assert len(t.read()) == 2
    # a file edited into mixing is a corrupt table, named by file and line
    lines = t.path.read_text().splitlines()
    lines[2] = lines[2].replace(",cpu,median,", ",wall,median,")
    t.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match=r"m_ops.csv:3: .*never mixes"):
        t.read()


def _legacy_table(path, ops):
    legacy_cols = [c for c in OPS_COLUMNS if c not in ("wall_ms", "cpu_ms", "clock", "estimator",
                                                       "clock_diverged")]
    lines = [",".join(legacy_cols)]
    for i, lc in enumerate(ops):
        r = {**_row(lc, clock="wall", wall=0.5 + i), "remeasured": "0", "se": repr(float(lc.se))}
        lines.append(",".join(str(r[c]) for c in legacy_cols))
    path.write_text("\n".join(lines) + "\n")


def test_legacy_tables_read_as_wall_median_and_upgrade_on_append(tmp_path):
    ops = _ops()
    p = tmp_path / "old_ops.csv"
    _legacy_table(p, ops[:2])
    t = Table.ops(p)
    rows = t.read()
    assert t.is_legacy() and [r["clock"] for r in rows] == ["wall", "wall"]
    assert rows[1]["estimator"] == "median" and rows[1]["wall_ms"] == rows[1]["median_ms"] == 1.5
    assert math.isnan(rows[1]["cpu_ms"]) and rows[1]["clock_diverged"] is False
    info = validate_table(p)
    assert (info["clock"], info["estimator"], info["legacy"]) == ("wall", "median", True)
    assert "provenance" in " ".join(info["problems"])  # only the missing provenance file
    with pytest.raises(ValueError, match=r"old_ops.csv.*\(legacy table without clock columns\)"):
        t.check_timing("cpu", "median")
    t.append([_row(ops[2], clock="wall", wall=2.0, cpu=1.5)])  # same clock: upgraded, appended
    assert not t.is_legacy()
    again = t.read()
    assert [r["op_key"] for r in again] == [lc.key() for lc in ops]
    assert again[0]["median_ms"] == rows[0]["median_ms"] and again[2]["clock_diverged"] is True
    # an old-style row (no clock columns at all) is a wall/median row
    old_row = {k: v for k, v in _row(_ops(4)[3], clock="wall").items()
               if k not in ("wall_ms", "cpu_ms", "clock", "estimator", "clock_diverged")}
    t.append([old_row])
    assert t.read()[-1]["clock"] == "wall"


@needs_ort
def test_job_rows_keep_both_clocks_and_refuse_mixing(tmp_path):
    from surrogate.measure.jobs import measure_ops
    from surrogate.tables import profile_reference_baseline

    kw = dict(out_dir=tmp_path, chunk=2, cache_dir=tmp_path / "c", progress=False)
    s = timing.MeasureSettings(warmup=1, runs=5, rounds=2, estimator="median")
    measure_ops("cpu-onnxruntime", "nasbench-macro", limit=2, settings=s, **kw)
    table = tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv"
    rows = Table.ops(table).read()
    for r in rows:
        assert (r["clock"], r["estimator"]) == ("cpu", "median") and r["median_ms"] == r["cpu_ms"]
        assert r["wall_ms"] > 0 and r["clock_diverged"] == clock_diverged(r["wall_ms"], r["cpu_ms"])
    prov = json.loads(table.with_name("nasbench-macro_ops.provenance.json").read_text())
    assert (prov["clock"], prov["estimator"], prov["clock_divergence_threshold"]) == ("cpu", "median", 0.1)
    sess = prov["sessions"][-1]
    assert (sess["clock"], sess["estimator"]) == ("cpu", "median")
    chunk = sess["reference_chunks"][0]
    assert chunk["ms"] > 0 and len(chunk["wall_ms"]) == len(chunk["cpu_ms"]) >= 2
    assert prov["profile"]["clock"] == "cpu" and prov["reference_ms"]["clock"] == "cpu"
    assert profile_reference_baseline(table.parent, "cpu", "median") > 0
    assert profile_reference_baseline(table.parent, "wall") is None
    with pytest.raises(ValueError, match=r"nasbench-macro_ops.csv.*estimator 'median'.*'p10'"):
        measure_ops("cpu-onnxruntime", "nasbench-macro", limit=3,
                    settings=timing.MeasureSettings(warmup=1, runs=2, rounds=1, estimator="p10"), **kw)
    with pytest.raises(ValueError, match=r"nasbench-macro_ops.csv.*clock 'wall'.*--clock cpu"):
        measure_ops("cpu-onnxruntime", "nasbench-macro", limit=3,
                    settings=timing.MeasureSettings(warmup=1, runs=2, rounds=1, clock="wall"), **kw)
    assert len(Table.ops(table).read()) == 2  # nothing was appended
