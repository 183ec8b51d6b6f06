"""Repeatability against the number of rounds: the statistics and a tiny real timing pass."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import numpy as np
import pytest

from surrogate.measure.repeatability import (ROUNDS_PASS_FORMAT, curve_conclusion, pass_rounds,
                                             pooled_labels, rounds_curve, rounds_protocol, time_rounds)
from surrogate.tables import table_path

needs_litert = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None and importlib.util.find_spec("tflite_runtime") is None,
    reason="ai-edge-litert not installed (optional runtime)")


def _by_k(rows):
    return {r["k"]: r for r in rows}


def test_global_ratio_is_removed_by_the_shifted_figures():
    t = np.linspace(5, 50, 20)
    a = {f"n{i}": [v] * 6 for i, v in enumerate(t)}
    b = {f"n{i}": [v * 1.03] * 6 for i, v in enumerate(t)}
    rows = _by_k(rounds_curve(a, b, ks=(1, 2, 3), seconds_per_round=0.3))
    assert sorted(rows) == [1, 2, 3, 6]  # ks up to R, plus R
    for r in rows.values():
        assert r["n"] == 20 and r["median_ratio"] == pytest.approx(1.03)
        assert r["median_abs_diff"] == pytest.approx(0.03) and r["within_2pct"] == 0.0
        assert r["within_5pct"] == 1.0 and r["shifted_median_abs_diff"] == pytest.approx(0, abs=1e-12)
        assert r["shifted_within_2pct"] == 1.0
        assert r["minutes_per_1000"] == pytest.approx(r["k"] * 0.3 * 1000 / 60)
    assert rows[1]["blocks"] == 6 and rows[3]["blocks"] == 2 and rows[6]["blocks"] == 1
    assert rows[1]["within_pass_median_abs_diff"] == 0.0 and "within_pass_median_abs_diff" not in rows[6]
    assert curve_conclusion(list(rows.values()))["k"] is None  # 3 % off, whatever k
    assert curve_conclusion(list(rows.values()), prefix="shifted_")["minutes_per_1000"] == pytest.approx(5)


def test_noise_that_the_median_of_k_rounds_removes():
    # every third round of pass b is 10 % slow: one round alone is off in 1 block of 3,
    # the median of 3 rounds never
    a = {f"n{i}": [10.0 + i] * 6 for i in range(8)}
    b = {f"n{i}": [(10.0 + i) * f for f in (1.1, 1.0, 1.0, 1.1, 1.0, 1.0)] for i in range(8)}
    rows = _by_k(rounds_curve(a, b, ks=(1, 3)))
    assert rows[1]["median_abs_diff"] == pytest.approx(0.1 * 2 / 6)
    assert rows[1]["first_median_abs_diff"] == pytest.approx(0.1)
    assert rows[1]["within_5pct"] == pytest.approx(4 / 6)
    assert rows[3]["median_abs_diff"] == 0.0 and rows[3]["within_5pct"] == 1.0
    c = curve_conclusion(list(rows.values()))
    assert c["k"] == 3 and c["rounds"] == 6 and c["minutes_per_1000"] is None
    # random round noise: agreement improves with k
    rng = np.random.default_rng(0)
    t = rng.uniform(5, 50, 60)
    a = {f"n{i}": list(v * np.exp(rng.normal(0, 0.05, 24))) for i, v in enumerate(t)}
    b = {f"n{i}": list(v * np.exp(rng.normal(0, 0.05, 24))) for i, v in enumerate(t)}
    rows = _by_k(rounds_curve(a, b))
    assert rows[24]["median_abs_diff"] < rows[8]["median_abs_diff"] < rows[1]["median_abs_diff"]
    assert rows[1]["median_abs_diff"] == pytest.approx(0.05 * np.sqrt(2) * 0.674, rel=0.25)


def test_conclusion_not_reached_and_shift_removed():
    a = {f"n{i}": [10.0] * 4 for i in range(5)}
    b = {f"n{i}": [10.3] * 4 for i in range(5)}
    rows = rounds_curve(a, b, ks=(1, 2))
    c = curve_conclusion(rows)
    assert c["k"] is None and c["rounds"] == 4
    assert curve_conclusion(rows, prefix="shifted_")["k"] == 1


def test_bad_input_names_the_input():
    good = {"x": [1.0, 1.0]}
    with pytest.raises(ValueError, match="share no network"):
        rounds_curve(good, {"y": [1.0, 1.0]})
    with pytest.raises(ValueError, match="pass a: expected a non-empty mapping"):
        rounds_curve({}, good)
    with pytest.raises(ValueError, match=r"pass b network 'x'.*finite and > 0"):
        rounds_curve(good, {"x": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"pass a network 'x'.*1-D"):
        rounds_curve({"x": []}, good)
    with pytest.raises(ValueError, match="ks: every k must be an integer >= 1, got 0"):
        rounds_curve(good, good, ks=(0,))
    with pytest.raises(ValueError, match="seconds_per_round must be > 0"):
        rounds_curve(good, good, seconds_per_round=0)
    with pytest.raises(ValueError, match="not a rounds pass"):
        pass_rounds({"format": "other"})
    with pytest.raises(ValueError, match="no rows"):
        curve_conclusion([])


@needs_litert
def test_time_rounds_real_litert_resumes(tmp_path):
    base = table_path("cpu-litert", "anb", "models")
    if not base.is_file():
        pytest.skip(f"{base} is absent")
    settings, base_ms, archs = rounds_protocol(base, 2, 3)
    assert settings.rounds == 3 and settings.max_extra_rounds == 0 and len(archs) == 2
    assert settings.estimator == "min+ref" and base_ms > 0
    settings = dataclasses.replace(settings, warmup=1, runs=3, pair_runs=3)
    path = tmp_path / "pass.json"
    before = os.sched_getaffinity(0)
    first = time_rounds("cpu-litert", archs[:1], path, settings=settings, reference_base_ms=base_ms,
                        cache_dir=tmp_path / "c", label="a")
    assert os.sched_getaffinity(0) == before  # unpinned after the pass
    kept = first["networks"][archs[0]]["rounds_ms"]
    data = time_rounds("cpu-litert", archs, path, settings=settings, reference_base_ms=base_ms,
                       cache_dir=tmp_path / "c", label="a", chunk=1)
    on_disk = json.loads(path.read_text())
    assert on_disk["format"] == ROUNDS_PASS_FORMAT and len(on_disk["chunks"]) == 2
    assert on_disk["networks"][archs[0]]["rounds_ms"] == kept  # not re-timed
    r = pass_rounds(data)
    assert set(r) == set(archs) and all(len(v) == 3 and min(v) > 0 for v in r.values())
    raw = pass_rounds(data, "raw_ms")
    assert all(len(v) == 3 for v in raw.values())
    assert all(v["seconds_per_round"] > 0 for v in data["networks"].values())
    with pytest.raises(ValueError, match="cannot resume, its 'rounds' is 3"):
        time_rounds("cpu-litert", archs, path, settings=dataclasses.replace(settings, rounds=4),
                    reference_base_ms=base_ms, cache_dir=tmp_path / "c", label="a")
    with pytest.raises(ValueError, match="needs a positive reference_base_ms"):
        time_rounds("cpu-litert", archs, tmp_path / "x.json", settings=settings)
    with pytest.raises(ValueError, match=r"arch #0 \('nope'\) does not parse"):
        time_rounds("cpu-litert", ["nope"], tmp_path / "x.json", settings=settings,
                    reference_base_ms=base_ms)


def _pass(label, nets, settings=None, base=0.5):
    return {"format": ROUNDS_PASS_FORMAT, "label": label, "settings": settings or {"rounds": 3},
            "reference_base_ms": base,
            "networks": {a: {"rounds_ms": r, "raw_ms": r} for a, r in nets.items()}}


def test_pooled_labels_pool_every_round_of_networks_in_all_passes():
    a = _pass("a", {"x": [1.0, 2.0, 9.0], "y": [4.0, 4.0, 4.0], "only_a": [1.0, 1.0, 1.0]})
    b = _pass("b", {"x": [3.0, 3.0, 3.0], "y": [5.0, 6.0, 7.0]})
    labels = pooled_labels([a, b])
    assert labels == {"x": 3.0, "y": 4.5}  # medians of 6 values; only_a is in one pass only
    assert pooled_labels([a])["only_a"] == 1.0
    with pytest.raises(ValueError, match="'a' and 'b' were timed with different settings"):
        pooled_labels([a, _pass("b", {"x": [1.0]}, base=0.6)])
    with pytest.raises(ValueError, match="at least one"):
        pooled_labels([])
    with pytest.raises(ValueError, match="not a rounds pass"):
        pooled_labels([{**a, "format": "other"}])


def test_fit_on_tables_keeps_excluded_networks_out():
    from surrogate.predict.workflow import fit_on_tables, load_timings, split

    archs, y = load_timings("cpu-litert", "anb")
    train = split(archs, y)[0]
    est, info = fit_on_tables("cpu-litert", "anb", "table-sum-cal", exclude=train[:5])
    assert info["train_rows"] == len(train) - 5 and info["excluded"] == 5
    full, _ = fit_on_tables("cpu-litert", "anb", "table-sum-cal")
    assert est.coef_ != full.coef_  # fitted on other rows


def test_label_noise_bench_reports_and_refuses_missing_passes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "label_noise.py"
    p = subprocess.run([sys.executable, str(script), "--space", "anb", "--passes", str(tmp_path),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "pass-a.json is missing" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_label_noise_bench_on_the_committed_anb_passes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "label_noise.py"
    p = subprocess.run([sys.executable, str(script), "--space", "anb", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "label_noise_cpu-litert_anb.json").read_text())["results"]
    assert r["n"] == 48 and set(r["scores"]) == {r["model"], "table-sum-cal"}
    for s in r["scores"].values():
        assert s["train_rows"] > 500 and 0 < s["vs_pooled_labels"]["mape"] < 0.2
    assert set(r["targets_met"]) == {"within_10pct", "within_5pct", "mape_ratio"}


def test_rounds_curve_report_without_passes_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "rounds_curve.py"
    p = subprocess.run([sys.executable, str(script), "--space", "fbnet", "--pass", "report",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "pass-a.json is missing: run --pass a first" in p.stderr
