"""Smoke tests of the benchmark scripts under bench/: each main() on its --quick configuration.

The scripts' full runs take minutes to an hour; here each runs on a tiny configuration
into a temporary folder (skipped when the benchmark data is absent).
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def _written(out, name: str) -> dict:
    j, m = out / f"{name}.json", out / f"{name}.md"
    assert j.is_file() and m.is_file()
    payload = json.loads(j.read_text())
    meta = payload["meta"]
    assert meta["benchmark"] == name and meta["machine"]["cpu_count"] >= 1
    assert {"numpy", "scikit-learn", "xgboost", "torch"} <= set(meta["libraries"])
    assert m.read_text().startswith("# ")
    return payload["results"]


def test_common_writes_json_and_markdown(tmp_path, capsys):
    common = _bench("common")
    table = common.md_table(["a", "b"], [["x", common.fmt(0.1234, "pct")], ["y", 1.5]])
    common.write_results("t", {"v": float("nan"), "k": [1, 2]}, "# T\n\n" + table, tmp_path,
                         seeds=[0])
    res = _written(tmp_path, "t")
    assert res == {"v": None, "k": [1, 2]}
    assert "12.3%" in capsys.readouterr().out
    assert common.median_metrics([{"n": 3, "mape": 0.1}, {"n": 3, "mape": 0.3}]) == \
        {"n": 3, "mape": 0.2, "repeats": 2}


@pytest.mark.slow
def test_help_phones_quick(fbnet_csv, tmp_path):
    res = _bench("help_phones").main(["--quick", "--data", str(fbnet_csv.parents[1]),
                                      "--out", str(tmp_path)])
    assert _written(tmp_path, "help_phones").keys() == res.keys()
    p2 = res["per_device"]["pixel2"]["median"]
    assert {"additive", "flops-linear", "ours (selected)", "rounding floor"} <= set(p2)
    assert 0 < p2["ours (selected)"]["mape"] < 0.3
    fs = res["few_shot"]["targets"]["pixel2"]
    assert set(fs) == {"5", "20"} and "pixel3" in fs["5"]


@pytest.mark.slow
def test_anb_accelerators_quick(anb_csv, tmp_path):
    res = _bench("anb_accelerators").main(["--quick", "--data", str(anb_csv.parents[1]),
                                           "--out", str(tmp_path)])
    _written(tmp_path, "anb_accelerators")
    cell = res["per_target"]["tpuv3"]["20"]
    assert {"scratch ridge", "scratch xgb", "from tpuv2"} <= set(cell)
    assert cell["from tpuv2"]["spearman"] > 0.5


@pytest.mark.slow
def test_predict_speed_quick(tmp_path):
    res = _bench("predict_speed").main(["--quick", "--spaces", "anb", "--out", str(tmp_path)])
    _written(tmp_path, "predict_speed")
    models = res["anb"]["models"]
    assert {"table-sum", "mlp", "xgb"} <= set(models)
    assert all(v["predictions_per_s"] > 0 and v["fit_s"] >= 0 for v in models.values())


@pytest.mark.slow
def test_search_anb_quick(tmp_path):
    res = _bench("search_anb").main(["--quick", "--out", str(tmp_path), "--work", str(tmp_path / "w")])
    _written(tmp_path, "search_anb")
    assert set(res["methods"]) == {"random", "evolution", "gradient"}
    assert res["checkpoints"] == [24] and res["reference_point"]["accuracy"] == 0.5
    for m in res["methods"].values():
        assert 0 < m["hv_ratio_median"][24] <= 1 and m["trials_per_s_median"] > 0
    assert 0 < res["distilled_accuracy_mlp"]["kendall_tau"] <= 1


@pytest.mark.slow
def test_search_cost_macro_quick(macro_json, tmp_path):
    args = ["--quick", "--methods", "random,evolution", "--data", str(macro_json.parents[1]),
            "--out", str(tmp_path), "--work", str(tmp_path / "w")]
    res = _bench("search_cost_macro").main(args)
    _written(tmp_path, "search_cost_macro")
    assert res["n_networks"] == 3969 and res["true_front_size"] >= 2
    assert (tmp_path / "search_cost_macro.png").stat().st_size > 0
    m = res["methods"]["random/surrogate"]
    assert 0 < m["hv"]["final"]["median"] <= 1
    assert m["hv_remeasured"]["final"]["median"] <= m["hv"]["final"]["median"] + 1e-9
    assert len(list((tmp_path / "w" / "runs").glob("*.json"))) == 8  # 2 methods x 2 modes x 2 seeds
    again = _bench("search_cost_macro").main(args)  # resumes every run from --work
    assert again["methods"]["random/surrogate"]["hv"] == m["hv"]


def test_tables_summary_covers_every_shipped_table(tmp_path):
    mod = _bench("tables_summary")
    assert mod.main(["--out", str(tmp_path)]) == 0
    res = _written(tmp_path, "tables_summary")
    root = Path(__file__).resolve().parents[1] / "data" / "latency_tables"
    assert len(res["tables"]) == len(list(root.glob("*/*.csv")))
    for t in res["tables"]:
        assert t["rows"] > 0 and t["kind"] in ("ops", "models")
        if t["kind"] == "ops":
            assert t["planned"] and t["rows"] <= t["planned"]


@pytest.mark.slow
def test_transfer_loo_quick(fbnet_csv, tmp_path):
    res = _bench("transfer_loo").main(["--quick", "--data", str(fbnet_csv.parents[1]),
                                       "--out", str(tmp_path)])
    _written(tmp_path, "transfer_loo")
    cell = res["groups"]["help_fbnet"]["raspi4"]["20"]
    assert {"multi-source", "best single calibrated", "full-data additive"} <= set(cell)
    assert cell["multi-source"]["spearman"] > 0.9
    assert "k20_beats_best_single" in res["targets"]["raspi4"]
