"""This machine in minutes: measure_host, this host's folder, and the main job's choice of predictor."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from surrogate.measure import host as host_mod  # noqa: E402
from surrogate.measure.hostjob import (host_home, host_timing_mismatch, local_predictor,  # noqa: E402
                                       measure_host, reference_ms_here)
from surrogate.measure.timing import MeasureSettings  # noqa: E402
from surrogate.tables import Table  # noqa: E402

FAST = MeasureSettings(warmup=1, runs=3, rounds=2)


def test_measure_host_tables_predictor_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("MNAS_HOME", str(tmp_path))
    res = measure_host("cpu-litert", "nasbench-macro", networks=4, settings=FAST, progress=False,
                       log=lambda *a: None)
    home = host_home()
    assert home == tmp_path / "hosts" / host_mod.host_identity()["host_id"]
    ops = Table.ops(home / "latency_tables" / "cpu-litert" / "nasbench-macro_ops.csv").read()
    nets = Table.models(home / "latency_tables" / "cpu-litert" / "nasbench-macro_models.csv").read()
    assert len(ops) == res.ops == 17 and len(nets) == res.networks == 4
    assert {(r["clock"], r["estimator"]) for r in ops + nets} == {("cpu", "min+ref")}
    prov = json.loads((home / "latency_tables" / "cpu-litert" / "nasbench-macro_ops.provenance.json").read_text())
    assert prov["sessions"][-1]["host"]["host_id"] == res.host_id
    assert prov["sessions"][-1]["converter"] == "direct"
    fit = res.fit
    assert fit["networks"] == 4 and np.isfinite(fit["loo"]["mape"]) and fit["coef"] > 0
    assert local_predictor("cpu-litert", "nasbench-macro") == home / "predictors" / "cpu-litert" / "nasbench-macro"

    from surrogate.predict.persist import load_predictor

    est = load_predictor(res.predictor_dir, space="nasbench-macro")
    y = est.predict([r["arch"] for r in nets])
    assert np.all(y > 0)
    # resumed: nothing timed twice, nothing dropped
    again = measure_host("cpu-litert", "nasbench-macro", networks=4, settings=FAST, progress=False,
                         log=lambda *a: None)
    assert again.ops == 17
    assert len(Table.models(home / "latency_tables" / "cpu-litert" / "nasbench-macro_models.csv").read()) == 4


def test_host_tables_of_another_estimator_are_set_aside_not_reused(tmp_path, monkeypatch):
    """A host folder timed before the profile's estimator changed is neither reused nor mixed."""
    import dataclasses

    monkeypatch.setenv("MNAS_HOME", str(tmp_path))
    old = measure_host("cpu-litert", "nasbench-macro", networks=4, progress=False, log=lambda *a: None,
                       settings=dataclasses.replace(FAST, estimator="min"))
    home = host_home()
    ops_csv = home / "latency_tables" / "cpu-litert" / "nasbench-macro_ops.csv"
    assert {r["estimator"] for r in Table.ops(ops_csv).read()} == {"min"}
    assert local_predictor("cpu-litert", "nasbench-macro") is None  # the profile times min+ref now
    why = host_timing_mismatch("cpu-litert", "nasbench-macro")
    assert "'min'" in why and "'min+ref'" in why and "nasbench-macro_ops.csv" in why
    msgs = []
    new = measure_host("cpu-litert", "nasbench-macro", networks=4, settings=FAST, progress=False,
                       log=msgs.append)
    assert any("set aside" in m for m in msgs)
    assert {r["estimator"] for r in Table.ops(ops_csv).read()} == {"min+ref"} and new.ops == 17
    assert local_predictor("cpu-litert", "nasbench-macro") == Path(new.predictor_dir)
    assert host_timing_mismatch("cpu-litert", "nasbench-macro") is None
    # nothing lost: the old tables, their provenance and the old predictor sit whole in superseded/
    (moved,) = (home / "superseded").iterdir()
    assert moved.name.endswith("_cpu-min")
    kept = Table.ops(moved / "latency_tables" / "cpu-litert" / "nasbench-macro_ops.csv").read()
    assert len(kept) == old.ops and {r["estimator"] for r in kept} == {"min"}
    assert (moved / "latency_tables" / "cpu-litert" / "nasbench-macro_ops.provenance.json").is_file()
    assert len(Table.models(moved / "latency_tables" / "cpu-litert" / "nasbench-macro_models.csv").read()) == 4
    assert (moved / "predictors" / "cpu-litert" / "nasbench-macro" / "meta.json").is_file()


def test_measure_host_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown space 'nope'"):
        measure_host("cpu-litert", "nope", home=tmp_path)
    with pytest.raises(ValueError, match="networks must be an integer >= 3"):
        measure_host("cpu-litert", "anb", networks=2, home=tmp_path)


def test_reference_operator_here_is_positive_and_stable():
    a, b = reference_ms_here(), reference_ms_here()
    assert a > 0 and b > 0 and abs(a / b - 1) < 0.5


def _made_up_host() -> dict:
    """A whole x86 identity built here, of a CPU no shipped table was timed on (not this host plus a change)."""
    text = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\n"
            "model name\t: mnas test CPU (made up)\nstepping\t: 1\n"
            "flags\t\t: sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 avx512f amx_tile amx_int8\n\n")
    ident = host_mod.host_identity(cpuinfo=text)
    ident.update(machine="x86_64", caches_kib={"L1d": 48, "L1i": 32, "L2": 2048, "L3": 107520})
    ident["host_id"] = host_mod.compute_host_id(ident)
    return ident


def test_main_job_measures_this_host_when_tables_came_from_another(tmp_path, monkeypatch):
    """A host whose identity differs from the shipped tables' gets its own predictor, measured once."""
    from search.latency import host_latency
    from surrogate.measure import hostid as hostid_mod

    other = _made_up_host()
    for mod in (host_mod, hostid_mod):  # host_match/host_home and host_info all see the made-up host
        monkeypatch.setattr(mod, "host_identity", lambda *a, **k: dict(other))
    monkeypatch.setenv("MNAS_HOME", str(tmp_path))
    msgs = []
    lat, note = host_latency("cpu-litert", "nasbench-macro", networks=3, progress=False, log=msgs.append)
    assert note["chosen"] == "host" and "measured" in note and msgs
    assert note["same_host_kind"] is False  # the shipped tables came from another host kind
    assert note["predictor"].startswith(str(tmp_path / "hosts" / other["host_id"]))
    assert lat.batch(lat.space.sample_indices(np.random.default_rng(0), 5)).min() > 0
    lat2, note2 = host_latency("cpu-litert", "nasbench-macro", progress=False, log=msgs.append)
    assert note2["chosen"] == "host" and "measured" not in note2  # reused, not measured again
    _, shipped = host_latency("cpu-litert", "nasbench-macro", source="shipped", log=msgs.append)
    assert shipped["chosen"] == "shipped"
    with pytest.raises(ValueError, match="latency source must be one of"):
        host_latency("cpu-litert", "nasbench-macro", source="bogus")
