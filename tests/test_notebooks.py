"""The walkthrough notebooks in notebooks/ run top to bottom and print sane figures.

Each notebook is executed with nbclient in a fresh kernel of the current interpreter
(cwd = notebooks/). The kernel spec is written to a temporary ``JUPYTER_PATH`` for the
test only, so nothing is registered globally and another ``python3`` kernel the user
may have installed is not picked up. Each notebook's last cell prints one JSON line of
key figures, which the tests parse and check.

Measured on one core of the development machine (user + system CPU of the kernel and
its workers; wall time was 2-4x that while another job shared the core): notebook 01
about 35 s, 02 about 50 s (one litert conversion is most of it), 03 about 11 s.
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
             "03_search_space_in_research_code.ipynb")
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
    s, cells, _ = _execute(NOTEBOOKS[0])
    assert s["notebook"] == "01_fit_latency_predictor"
    assert s["ops_rows"] == 17  # every operator configuration of nasbench-macro
    assert s["model_rows"] >= 30 and s["train_rows"] > 0 and s["test_rows"] >= 2
    assert s["train_rows"] + s["test_rows"] == s["model_rows"]
    assert 0.0 <= s["within_10pct"] <= 1.0
    assert _finite(s["mape"]) and s["mape"] >= 0
    for k in ("kendall_tau", "baseline_flops_linear_tau", "baseline_table_sum_tau"):
        assert _finite(s[k]) and -1.0 <= s[k] <= 1.0, k
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
