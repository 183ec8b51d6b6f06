"""Re-timing a table with its own protocol, under a busy loop, and comparing two timings."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from surrogate.measure.retime import BusyLoad, compare_tables, retime_table, table_settings


def test_compare_tables_joins_on_arch_and_counts_agreement():
    a = [{"arch": f"n{i}", "median_ms": 10.0} for i in range(10)]
    b = [{"arch": f"n{i}", "median_ms": 10.0 * (1 + 0.01 * i) - 1e-9} for i in range(10)] + [{"arch": "x", "median_ms": 1}]
    r = compare_tables(a, b)
    assert r["n"] == 10
    assert r["within_1pct"] == pytest.approx(0.2) and r["within_5pct"] == pytest.approx(0.6)
    assert r["median_abs_rel_diff"] == pytest.approx(0.045, abs=1e-6)
    with pytest.raises(ValueError, match="share no network"):
        compare_tables(a, [{"arch": "zzz", "median_ms": 1.0}])


def test_busy_load_occupies_every_core_and_stops():
    cores = sorted(os.sched_getaffinity(0))
    with BusyLoad() as busy:
        time.sleep(0.3)
        assert len(busy.procs) == len(cores) and all(p.poll() is None for p in busy.procs)
        times = os.times()
    assert all(p.poll() is not None for p in busy.procs)
    assert times.elapsed > 0


def test_retime_uses_the_tables_protocol(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from space.spaces import get_space
    from surrogate.measure.jobs import measure_models
    from surrogate.measure.timing import MeasureSettings
    from surrogate.tables import Table

    sp = get_space("nasbench-macro")
    rng = np.random.default_rng(0)
    s = MeasureSettings(warmup=1, runs=4, rounds=2, estimator="p25")
    measure_models("cpu-litert", "nasbench-macro", [(sp.sample(rng), "t") for _ in range(3)], out_dir=tmp_path,
                   settings=s, progress=False, cache_dir=tmp_path / "c")
    base = tmp_path / "cpu-litert" / "nasbench-macro_models.csv"
    assert table_settings(base).estimator == "p25" and table_settings(base).runs == 4
    retime_table("cpu-litert", base, 2, "nasbench-macro_models_repeat.csv", progress=False)
    again = Table.models(base.with_name("nasbench-macro_models_repeat.csv")).read()
    assert len(again) == 2 and {r["estimator"] for r in again} == {"p25"}
    with pytest.raises(ValueError, match="need 5 to re-time"):
        retime_table("cpu-litert", base, 5, "x.csv", progress=False)
    with pytest.raises(FileNotFoundError, match="no provenance"):
        table_settings(tmp_path / "nope_models.csv")
