"""A damaged predictor folder: every error names the file; the CLI says it in one line (exit 2)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

pytest.importorskip("xgboost")

from surrogate.predict import load_predictor  # noqa: E402
from surrogate.predict.persist import save_predictor  # noqa: E402
from surrogate.predict.workflow import default_predictor_dir  # noqa: E402


def _anb_indices():
    import numpy as np

    from space import get_space

    return get_space("anb").sample_indices(np.random.default_rng(0), 3)


def _anb_member() -> str:
    from space import get_space

    return str(get_space("anb").to_arch(_anb_indices()[0]))


@pytest.fixture()
def folder(tmp_path):
    dst = tmp_path / "pred"
    shutil.copytree(default_predictor_dir("cpu-litert", "anb"), dst)
    assert {"meta.json", "model.json", "ops.json"} <= {p.name for p in dst.iterdir()}
    return dst


@pytest.mark.parametrize("name, damage, needle", [
    ("ops.json", "{not json", "ops.json:1: invalid JSON"),
    ("ops.json", '["a", 1]', "ops.json: expected an object"),
    ("model.json", "garbage", "model.json: not a readable XGBoost model"),
    ("meta.json", "[1, 2]", "meta.json: not a predictor saved by this library"),
    ("ops.json", None, "ops.json: missing"),
    ("model.json", None, "model.json: missing"),
])
def test_damaged_file_is_named(folder, name, damage, needle):
    if damage is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(damage)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_predictor(folder)
    assert needle in str(err.value) and str(folder) in str(err.value)


def test_meta_without_a_field_is_named(folder):
    import json

    meta = json.loads((folder / "meta.json").read_text())
    del meta["fitted"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="meta.json: lacks the field 'fitted'"):
        load_predictor(folder)


def test_cli_names_the_damaged_file_in_one_line(folder):
    (folder / "model.json").write_text("garbage")
    p = subprocess.run([sys.executable, "-m", "search.cli", "predict", "--predictor", str(folder),
                        "--space", "anb", _anb_member(), "--json"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.json" in lines[0] and "Traceback" not in p.stderr


def test_save_over_an_existing_folder_swaps_it_whole_with_ordinary_permissions(folder, tmp_path):
    est = load_predictor(folder)
    (folder / "stray.txt").write_text("from an older save")
    save_predictor(est, folder)
    assert not (folder / "stray.txt").exists(), "the old folder is replaced, not merged"
    idx = _anb_indices()
    assert load_predictor(folder).predict(idx) == pytest.approx(est.predict(idx))
    mode = stat.S_IMODE(os.stat(folder).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred.")], "no temporary folder left"
