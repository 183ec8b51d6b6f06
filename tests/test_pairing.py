"""Reference-paired estimators (``min+ref``): each round divided by the reference timed after it."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from surrogate.measure import timing
from surrogate.measure.clocks import ESTIMATORS, RAW_ESTIMATORS, RunTimes, split_estimator
from surrogate.tables import Table


class _Host:
    """A machine whose speed changes from one timed call to the next (a noisy neighbour)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.factor = 1.0

    def item(self, ms: float, new_episode: bool = True):
        def fn(warmup: int, runs: int) -> RunTimes:
            if new_episode:  # the host's state moves between items, not within one item + its pair
                self.factor = float(self.rng.choice([1.0, 1.35, 1.6]))
            t = np.full(runs, ms * self.factor)
            return RunTimes(t, t)
        return fn


def test_split_estimator_and_the_estimator_list():
    assert split_estimator("min+ref") == ("min", True)
    assert split_estimator("p10") == ("p10", False)
    assert set(ESTIMATORS) == set(RAW_ESTIMATORS) | {e + "+ref" for e in RAW_ESTIMATORS}
    with pytest.raises(ValueError, match="estimator must be one of"):
        split_estimator("mean+ref")


def test_pairing_cancels_host_speed_episodes_that_the_raw_estimator_keeps():
    host = _Host()
    items = {"a": host.item(2.0), "b": host.item(5.0), "c": host.item(11.0)}
    ref = ("ref", host.item(0.5, new_episode=False))
    raw = timing.measure(items, timing.MeasureSettings(warmup=0, runs=3, rounds=5, clock="cpu",
                                                       estimator="min", max_extra_rounds=0),
                         reference=ref)
    paired = timing.measure(items, timing.MeasureSettings(warmup=0, runs=3, rounds=5, clock="cpu",
                                                          estimator="min+ref", max_extra_rounds=0),
                            reference=ref, reference_base_ms=0.5)
    for name, true_ms in (("a", 2.0), ("b", 5.0), ("c", 11.0)):
        p = paired.results[name]
        assert p.median_ms == pytest.approx(true_ms, rel=1e-9)  # ratio * base: the speed cancels
        assert p.ref_ratio == pytest.approx(true_ms / 0.5, rel=1e-9)
        assert p.rel_spread == pytest.approx(0.0, abs=1e-12)
        assert p.estimator == "min+ref" and p.cpu_ms >= true_ms  # raw clocks stay raw
    # the raw estimator carries the episodes: at least one item is off by >= 10%
    assert max(abs(raw.results[n].median_ms / t - 1) for n, t in (("a", 2.0), ("b", 5.0), ("c", 11.0))) > 0.1
    assert paired.reference_base_ms == 0.5 and raw.reference_base_ms is None


def test_pairing_needs_a_reference_and_default_base_is_the_round_start_reference():
    host = _Host(1)
    s = timing.MeasureSettings(warmup=0, runs=2, rounds=3, clock="cpu", estimator="min+ref")
    with pytest.raises(ValueError, match="needs a reference"):
        timing.measure({"a": host.item(1.0)}, s)
    with pytest.raises(ValueError, match="reference_base_ms must be > 0"):
        timing.measure({"a": host.item(1.0)}, s, reference=("r", host.item(0.5, False)),
                       reference_base_ms=-1.0)
    rep = timing.measure({"a": host.item(1.0)}, s, reference=("r", host.item(0.5, False)))
    assert rep.reference_base_ms == pytest.approx(float(np.median(rep.reference_ms)))
    with pytest.raises(ValueError, match="needs one paired reference timing per round"):
        timing.summarize("x", [RunTimes([1.0], [1.0])], clock="cpu", estimator="min+ref")


def test_drift_guard_never_retimes_a_paired_chunk():
    host = _Host(2)
    s = timing.MeasureSettings(warmup=0, runs=2, rounds=2, clock="cpu", estimator="min+ref",
                               max_drift=0.01, drift_retries=2)
    guard = timing.DriftGuard(s, baseline_ms=0.1, base_ms=0.5)  # reference far off the baseline
    rep = guard.measure_chunk({"a": host.item(1.0)}, ("r", host.item(0.5, False)), seed=0)
    assert guard.retries == 0 and guard.unresolved_chunks == 1
    assert rep.reference_base_ms == 0.5 and guard.as_dict()["reference_base_ms"] == 0.5


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime missing")
def test_a_paired_table_keeps_its_base_across_sessions_and_refuses_raw_rows(tmp_path):
    from surrogate.measure.jobs import measure_ops
    from surrogate.measure.timing import MeasureSettings

    kw = dict(out_dir=tmp_path, chunk=2, cache_dir=tmp_path / "c", progress=False)
    s = MeasureSettings(warmup=1, runs=3, rounds=2)  # estimator None: the profile's (min+ref)
    measure_ops("cpu-onnxruntime", "nasbench-macro", limit=2, settings=s, **kw)
    table = tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv"
    prov_p = table.parent / "nasbench-macro_ops.provenance.json"
    base = json.loads(prov_p.read_text())["reference_base_ms"]
    assert base > 0 and json.loads(prov_p.read_text())["estimator"] == "min+ref"
    measure_ops("cpu-onnxruntime", "nasbench-macro", limit=4, settings=s, **kw)  # resumed session
    prov = json.loads(prov_p.read_text())
    assert prov["reference_base_ms"] == base and prov["sessions"][-1]["reference_base_ms"] == base
    rows = Table.ops(table).read()
    assert len(rows) == 4 and {r["estimator"] for r in rows} == {"min+ref"}
    from surrogate.tables import reference_base, table_timing

    assert table_timing(table) == {"clock": "cpu", "estimator": "min+ref", "reference_base_ms": base}
    assert table_timing(tmp_path / "nope_ops.csv") == {}
    # a new table of the folder takes the folder's base: ops and networks share one scale
    assert reference_base(Table.models(table.parent / "x_models.csv"), "cpu", "min+ref") == base
    assert reference_base(Table.models(table.parent / "x_models.csv"), "cpu", "p10+ref") is None
    with pytest.raises(ValueError, match="never mixes clocks or estimators"):
        measure_ops("cpu-onnxruntime", "nasbench-macro", limit=6,
                    settings=MeasureSettings(warmup=1, runs=3, rounds=2, estimator="min"), **kw)


def test_the_main_jobs_reference_tolerance_follows_the_tables_estimator(tmp_path):
    from search.latency import (HOST_REFERENCE_TOLERANCE, HOST_REFERENCE_TOLERANCE_PAIRED,
                                reference_tolerance)

    for est, want in (("min+ref", HOST_REFERENCE_TOLERANCE_PAIRED), ("min", HOST_REFERENCE_TOLERANCE),
                      (None, HOST_REFERENCE_TOLERANCE)):
        table = tmp_path / f"{est or 'legacy'}_ops.csv"
        table.write_text("op,median_ms\n")
        prov = {"clock": "cpu", "estimator": est} if est else {}
        (tmp_path / f"{est or 'legacy'}_ops.provenance.json").write_text(json.dumps(prov))
        assert reference_tolerance(table) == want, est
    assert HOST_REFERENCE_TOLERANCE_PAIRED > HOST_REFERENCE_TOLERANCE
