"""A non-editable wheel install finds its shipped tables and predictors outside the checkout.

Builds the wheel, installs it (no deps, no network) into a fresh venv that reuses
this venv's dependencies through a ``.pth`` file, and runs ``mnas eval`` and a
short ``mnas sweep`` from a temporary folder (about 25 s). The wheel is built from a
copy of the checkout, so no ``build/`` folder of the checkout leaks stale files in.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_NOT_BUILT = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "mnas_runs",
                                    "bench", "notebooks", "tests", "docs", "*.tflite", "*.onnx")


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(python of the fresh venv, its ``mnas`` script, environment to run them in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MNAS_TABLES_DIR")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_NOT_BUILT)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("mnas_surrogate-*.whl")
    venv = tmp / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
          str(venv)], tmp, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        tmp, env).stdout.strip())
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_mnas_test_deps.pth").write_text("".join(p + "\n" for p in deps))
    # --target: a fresh install tree, so pip never looks at (or uninstalls) the
    # editable install of the venv that lends the dependencies
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
          str(purelib), str(wheel)], tmp, env)
    mnas = purelib / "bin" / "mnas"
    assert mnas.is_file(), "the wheel installed no mnas console script"
    return py, mnas, env


def test_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    py, _, env = installed
    out = _run([str(py), "-c", "import surrogate, surrogate.tables as t; "
                "print(surrogate.__file__); print(t.tables_dir())"], tmp_path, env).stdout.split()
    assert not out[0].startswith(str(REPO)) and str(py.parents[1]) in out[0]
    tables = Path(out[1])
    assert not str(tables).startswith(str(REPO)) and (tables / "cpu-litert" / "anb_ops.csv").is_file()
    shipped = sorted(p.relative_to(REPO / "data" / "latency_tables").as_posix()
                     for p in (REPO / "data" / "latency_tables").glob("*/*.csv"))
    assert sorted(p.relative_to(tables).as_posix() for p in tables.glob("*/*.csv")) == shipped


def test_installed_mnas_eval_and_sweep_run_outside_checkout(installed, tmp_path):
    _, mnas, env = installed
    res = _run([str(mnas), "eval", "--profile", "cpu-litert", "--space", "anb", "--json"],
               tmp_path, env)
    ev = json.loads(res.stdout)
    assert ev, "mnas eval printed no results"
    out = tmp_path / "sweep"
    res = _run([str(mnas), "sweep", "--space", "anb", "--profile", "cpu-litert", "--trials", "20",
                "--remeasure", "0", "--latency-source", "shipped", "--no-progress", "--out",
                str(out), "--json"], tmp_path, env)
    summary = json.loads(res.stdout)
    assert summary["trials"] >= 20 and (out / "trials.csv").is_file()
    pred = Path(summary["latency"]["predictor"])  # the shipped predictor, from the wheel
    assert (pred / "meta.json").is_file() and REPO not in pred.parents
    # the table the shipped predictor was fitted on resolves to the wheel's package data
    table = Path(summary["latency"]["table_source"] or "")
    assert table.name == "anb_ops.csv" and table.is_file() and REPO not in table.parents
