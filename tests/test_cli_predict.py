"""`mnas fit / predict / eval` on a small table measured here with ONNX Runtime."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("xgboost")


def mnas(*args, env=None):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("tables")
    env = {**os.environ, "MNAS_CACHE_DIR": str(root / "cache")}
    common = ["--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--out", str(root),
              "--warmup", "2", "--runs", "5", "--rounds", "2", "--no-progress"]
    p = mnas("measure", "ops", *common, env=env)
    assert p.returncode == 0, p.stderr
    p = mnas("measure", "models", *common, "--random", "40", "--seed", "1", "--chunk", "20", env=env)
    assert p.returncode == 0, p.stderr
    return root


def test_fit_predict_eval(tables, tmp_path):
    out = tmp_path / "pred"
    p = mnas("fit", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--model",
             "residual-ridge", "-o", str(out), "--tables", str(tables), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    from surrogate.tables import Table

    rows = Table.models(tables / "cpu-onnxruntime" / "nasbench-macro_models.csv").read()
    assert 30 <= len(rows) <= 40  # 40 draws, duplicates measured once
    assert info["train_rows"] + info["test_rows"] == len(rows) and info["test_rows"] >= 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["space"] == "nasbench-macro" and meta["profile"] == "cpu-onnxruntime"
    assert meta["table"]["sha256"] and meta["versions"]["numpy"]
    p = mnas("predict", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--predictor",
             str(out), "res32_stems1_cls10:r1_k3_s22_e3_i32_o64,r1_k1_s11_e1_i64_o64_skip,"
             "r1_k5_s22_e6_i64_o128,r1_k1_s11_e1_i128_o128_skip,r1_k1_s11_e1_i128_o128_skip,"
             "r1_k3_s22_e3_i128_o256,r1_k1_s11_e1_i256_o256_skip,r1_k1_s11_e1_i256_o256_skip", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["latency_ms"] > 0
    png = tmp_path / "pvm.png"
    p = mnas("eval", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--predictor",
             str(out), "--tables", str(tables), "--json", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    for k in ("n", "within_10pct", "within_5pct", "mape", "kendall_tau"):
        assert k in res and k in res["baselines"]["flops_linear"] and k in res["baselines"]["table_sum"]
    assert res["n"] == info["test_rows"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_load_timings_normalises_by_each_chunks_reference_time(tables, tmp_path):
    """Two chunks of 20 rows; each row is rescaled by the table's median / its chunk's ref."""
    import csv
    import io
    import shutil

    import numpy as np

    from surrogate.predict.workflow import load_timings
    from surrogate.tables import Table

    path = tables / "cpu-onnxruntime" / "nasbench-macro_models.csv"
    rows = Table.models(path).read()
    archs, raw = load_timings("cpu-onnxruntime", "nasbench-macro", tables)
    archs_n, norm = load_timings("cpu-onnxruntime", "nasbench-macro", tables, normalise=True)
    ref = np.array([r["ref_ms"] for r in rows])
    assert archs_n == archs and len({float(v) for v in ref}) >= 2  # a reference per chunk
    np.testing.assert_allclose(norm, raw * np.median(ref) / ref)
    # a row without a reference timing (e.g. imported) is refused, naming file and line
    bad = tmp_path / "cpu-onnxruntime"
    shutil.copytree(tables / "cpu-onnxruntime", bad)
    recs = list(csv.reader(io.StringIO((bad / "nasbench-macro_models.csv").read_text())))
    recs[3][recs[0].index("ref_ms")] = "nan"  # line 4 of the file
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(recs)
    (bad / "nasbench-macro_models.csv").write_text(buf.getvalue())
    with pytest.raises(ValueError, match=r"nasbench-macro_models.csv: line 4 has no reference"):
        load_timings("cpu-onnxruntime", "nasbench-macro", tmp_path, normalise=True)


def test_predictor_refuses_other_space_or_profile(tables, tmp_path):
    out = tmp_path / "pred"
    assert mnas("fit", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--model",
                "table-sum", "-o", str(out), "--tables", str(tables)).returncode == 0
    p = mnas("predict", "--profile", "cpu-litert", "--space", "nasbench-macro", "--predictor",
             str(out), "mnasnet-a1")
    assert p.returncode == 2 and "profile 'cpu-onnxruntime', not 'cpu-litert'" in p.stderr
    p = mnas("predict", "--profile", "cpu-onnxruntime", "--space", "anb", "--predictor", str(out),
             "efficientnet-b0")
    assert p.returncode == 2 and "space 'nasbench-macro', not 'anb'" in p.stderr
    # issue 15: a network outside the space is priced from operators, not refused
    p = mnas("predict", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro", "--predictor",
             str(out), "mnasnet-a1", "--json")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)[0]
    assert row["method"] == "table" and "not in space" in row["note"] and row["latency_ms"] > 0
    p = mnas("fit", "--profile", "cpu-onnxruntime", "--space", "fbnet", "-o", str(out),
             "--tables", str(tables))
    assert p.returncode == 2 and "no end-to-end table" in p.stderr


def test_every_shipped_table_pair_has_a_current_shipped_predictor():
    """Each (profile, space) with a shipped operator table ships a predictor fitted on
    exactly that table (same hash), which loads and predicts positive latencies."""
    import numpy as np

    from space.spaces import get_space
    from surrogate.tables import tables_dir
    from surrogate.predict.optable import OpTable
    from surrogate.predict.persist import load_predictor
    from surrogate.predict.workflow import default_predictor_dir

    pairs = [(p.parent.name, p.name[: -len("_ops.csv")]) for p in tables_dir().glob("*/*_ops.csv")]
    assert pairs
    from space.spaces import space_names

    for profile, space in pairs:
        if space not in space_names():
            continue  # reference_ops.csv: the host table of phone predictors, not a space's
        if len(OpTable.shipped(profile, space)) < len(get_space(space).operator_configs()):
            continue  # a table still being measured ships no predictor yet
        d = default_predictor_dir(profile, space)
        assert (d / "meta.json").is_file(), f"no shipped predictor for {profile}/{space}"
        est = load_predictor(d, space=space, profile=profile)
        assert est.meta_["table"]["sha256"] == OpTable.shipped(profile, space).sha256, (profile, space)
        idx = get_space(space).sample_indices(np.random.default_rng(0), 50)
        pred = est.predict(idx)
        assert np.all(np.isfinite(pred)) and np.all(pred > 0), (profile, space)
