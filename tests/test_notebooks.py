"""The walkthrough notebooks in notebooks/ run top to bottom and print sane figures.

Each notebook is executed with nbclient in a fresh kernel of the current interpreter
(cwd = notebooks/). The kernel spec is written to a temporary ``JUPYTER_PATH`` for the
test only, so nothing is registered globally and another ``python3`` kernel the user
may have installed is not picked up. Each notebook's last cell prints one JSON line of
key figures, which the tests parse and check.

Measured on one core of the development machine (user + system CPU of the kernel and
its workers; wall time was 2-4x that while another job shared the core): notebook 01
about 35 s, 02 about 50 s (one litert conversion is most of it), 03 about 11 s. Wall
time under ``taskset -c 0`` beside a measurement on the other core: 01 about 50 s
(three networks timed with LiteRT), 04 about 35 s. Notebook 04 reads the HELP data
(``$MNAS_BENCHMARKS_DIR`` or ``../shared/benchmarks``) and skips without it.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
NOTEBOOKS = ("01_fit_latency_predictor.ipynb", "02_pareto_sweep.ipynb",
             "03_search_space_in_research_code.ipynb", "04_research_workflow.ipynb")
CELL_TIMEOUT_S = 900  # a whole notebook takes well under that on one quiet core


def _read(name: str):
    return nbformat.read(NB_DIR / name, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name):
    """Committed without outputs or execution counts; valid; starts with an explanation."""
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.cells and nb.cells[0].cell_type == "markdown", "first cell must explain the notebook"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"{name}: code cell {i} has outputs; clear them"
        assert cell.get("execution_count") is None, f"{name}: code cell {i} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A ``python3`` kernel spec for this interpreter, on a private JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return tmp_path


def _execute(name: str) -> tuple[dict, list, float]:
    """Run a notebook; returns (the JSON summary of its last cell, its cells, wall seconds)."""
    nb = _read(name)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    wall = time.perf_counter() - t0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert lines, f"{name}: the last cell printed no JSON summary; its output was:\n{text}"
    summary = json.loads(lines[-1])
    print(f"\n{name}: {wall:.1f} s wall; summary {json.dumps(summary)}")
    return summary, nb.cells, wall


def _images(cells) -> int:
    return sum("image/png" in out.get("data", {}) for c in cells for out in c.get("outputs", []))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.mark.timeout(1800)
def test_01_fit_latency_predictor(kernel_env):
    from space import get_space
    from surrogate.tables import tables_dir

    if not (tables_dir() / "cpu-litert" / "anb_models.csv").is_file():
        pytest.skip("no cpu-litert/anb tables under " + str(tables_dir()))
    s, cells, _ = _execute(NOTEBOOKS[0])
    assert (s["notebook"], s["profile"], s["space"]) == ("01_fit_latency_predictor", "cpu-litert", "anb")
    space_ops = {lc.key() for lc in get_space("anb").operator_configs() if not lc.is_identity}
    assert s["space_ops"] == len(space_ops) and s["ops_missing"] == 0 and s["ops_rows"] >= len(space_ops)
    assert s["model_rows"] >= 100 and s["test_rows"] >= 20
    assert s["train_rows"] + s["test_rows"] == s["model_rows"]
    # chosen by cross-validation: the lowest CV MAPE of the candidates
    assert s["predictor"] in s["candidates"] and set(s["cv_mape"]) == set(s["candidates"])
    assert s["cv_mape"][s["predictor"]] == min(s["cv_mape"].values())
    assert 0.0 <= s["within_10pct"] <= 1.0 and _finite(s["mape"]) and s["mape"] >= 0
    for k in ("kendall_tau", "baseline_flops_linear_tau", "baseline_table_sum_tau"):
        assert _finite(s[k]) and -1.0 <= s[k] <= 1.0, k
    # the fitted predictor beats both baselines on the held-out networks
    assert s["mape"] < s["baseline_flops_linear_mape"] and s["mape"] < s["baseline_table_sum_mape"]
    assert s["kendall_tau"] > s["baseline_flops_linear_tau"]
    assert _finite(s["shipped_mape"]) and s["shipped_mape"] < s["baseline_flops_linear_mape"]
    # three held-out networks timed here with LiteRT: same order of magnitude as predicted
    assert s["local_timed"] == 3 and all(_finite(v) and v > 0 for v in s["local_ms"])
    assert all(0.25 < r < 4.0 for r in s["local_over_predicted"]) and s["reference_ratio"] > 0
    assert s["reload_max_abs_diff_ms"] < 1e-9  # the reloaded predictor predicts the same
    assert _images(cells) >= 1


@pytest.mark.timeout(1800)
def test_02_pareto_sweep(kernel_env):
    s, cells, _ = _execute(NOTEBOOKS[1])
    assert s["notebook"] == "02_pareto_sweep"
    assert s["trials"] >= 100 and s["pareto_size"] >= 2
    assert s["hypervolume"] > 0 and s["hypervolume_random"] > 0
    ref = s["hypervolume_reference"]
    assert ref["latency_ms"] == pytest.approx(2 * s["latency_target_ms"], rel=1e-3) and ref["accuracy"] == 0.0
    # the area dominated is at most the reference box (accuracy <= 1)
    assert s["hypervolume"] <= ref["latency_ms"]
    assert _finite(s["finalist_predicted_ms"]) and s["finalist_predicted_ms"] > 0
    assert _finite(s["finalist_measured_ms"]) and s["finalist_measured_ms"] > 0
    assert s["journal_trials"] == 24 and s["journal_worker_evaluations"] == [12, 12]
    assert _images(cells) >= 1


@pytest.mark.timeout(1800)
def test_03_search_space_in_research_code(kernel_env):
    s, cells, _ = _execute(NOTEBOOKS[2])
    assert s["notebook"] == "03_search_space_in_research_code"
    assert (s["a1_params"], s["a1_madds"]) == (3_887_038, 311_579_072)
    assert s["blockstring_roundtrip"] is True
    assert s["onnx_cached_second_time"] is True and s["onnx_max_rel_diff"] < 1e-4
    assert s["table_operators"] > 0 and s["onehot_gap_ms"] < 1e-3
    assert s["proxy_kendall_tau"] > 0.5
    # the latency penalty drives the expected latency down; without it, it goes up
    assert s["expected_latency_end_ms"] < s["expected_latency_start_ms"]
    assert s["expected_latency_end_no_penalty_ms"] > s["expected_latency_end_ms"]
    assert _images(cells) >= 1


@pytest.mark.timeout(1800)
def test_04_research_workflow(kernel_env):
    from space import count, get_space, variant
    from surrogate.datasets import benchmark_file

    try:
        benchmark_file(None, "help_fbnet/fbnet_latency.csv", "HELP FBNet latencies")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    s, cells, _ = _execute(NOTEBOOKS[3])
    assert s["notebook"] == "04_research_workflow" and s["bench_on_path"] is False
    # (a) public latencies: the HELP CSV, MIT-licensed, source and target among its devices
    assert s["help_rows"] >= 2500 and s["help_license"] == "MIT"
    assert {s["source"], s["target"]} <= set(s["help_devices"])
    assert s["train_rows"] + s["test_rows"] <= s["help_rows"]
    # the source is a measured device: an additive (per-op lookup) model does not fit it exactly
    assert s["additive_mape_by_device"][s["source"]] > 0.005
    # (b) selection: a candidate, better than FLOPs on the held-out networks
    assert s["selected"] in s["candidates"] and len(s["candidates"]) >= 3
    assert 0 < s["selected_test_mape"] < s["flops_linear_test_mape"]
    # (c) K-shot: scored on the fixed held-out rows; transfer beats scratch ridge from K=10 on
    assert s["kshot_n"] == [s["test_rows"]] and s["kshot_draws"] == [3] and len(s["ks"]) >= 3
    for k, t, r in zip(s["ks"], s["kshot_transfer_mape"], s["kshot_scratch_ridge_mape"]):
        assert _finite(t) and _finite(r) and t > 0
        if k >= 10:
            assert t < r, (k, t, r)
    # (d) MnasNet-A1 x0.75 @192 priced from operators (not a space member), cheaper than A1
    a = variant("mnasnet-a1", width=0.75, resolution=192)
    n_ops = len([lc for lc in a.ops() if not lc.is_identity])
    assert s["a1_method"] == "model" and s["a1_w075_r192_method"] == "table"
    assert s["a1_w075_r192_measured_ops"] + s["a1_w075_r192_modelled_ops"] == n_ops
    assert 0 < s["a1_w075_r192_ms"] < s["a1_ms"] and s["a1_w075_r192_madds"] == count(a).madds
    assert s["b1_w075_params"] == 3_170_208  # SPEC: MnasNet-B1 x0.75, the multiplier scales channels
    # (e) LUT: activation read from the file's own comments, every operator covered, the
    # sum equals the table's
    assert (s["lut_act"], s["lut_act_source"]) == (get_space("anb").arch_defaults["act"], "comment")
    assert s["lut_matched_ops"] == s["lut_target_ops"] > 0 and s["lut_missing"] == 0
    assert s["lut_sum_ms"] > 0 and abs(s["lut_sum_ms"] - s["table_sum_ms"]) < 1e-9
    assert _images(cells) >= 1
