"""Latency tables: validation, torn rows, LUT round trip; measurement jobs resume after SIGKILL."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from space import get_space
from surrogate.lut import export_lut, lut_to_rows, parse_lut
from surrogate.tables import Table, TableError, file_sha256, op_row_key, validate_table

REAL_LUT = """\
Conv-input:224x224x3-output:112x112x32:
  count: 50
  mean: 2.41
  var: 0.012
expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0:
  count: 50
  mean: 1.83
  var: 0.004
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0:
  count: 50
  mean: 3.02
  var: 0.02
expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:3-stride:1-idskip:1:
  count: 50
  mean: 2.2
  var: 0.01
Logits-input:1x1x1280-output:1000:
  count: 50
  mean: 0.4
  var: 0.0001
"""


def _row(lc, median=1.0):
    return {**op_row_key(lc), "median_ms": median, "mean_ms": median, "std_ms": 0.1, "p10_ms": 0.9,
            "p90_ms": 1.1, "iqr_ms": 0.1, "cv": 0.1, "rel_spread": 0.01, "n_runs": 30, "n_rounds": 3,
            "remeasured": False, "ref_ms": 0.5, "measured_at": "2026-01-01T00:00:00+00:00"}


def test_lut_import_export_round_trip(tmp_path):
    lut = parse_lut(REAL_LUT, "mobile.yaml")
    assert len(lut) == 5
    rows = lut_to_rows(lut)
    assert len(rows) == 4  # Conv is the stem; a Logits without Conv_1/AvgPool2D is no whole head
    assert [r["op"] for r in rows].count("stem") == 1
    text, skipped = export_lut(rows)
    assert skipped == 0
    again = parse_lut(text)
    for k, v in again.items():
        assert v["count"] == lut[k]["count"]
        assert math.isclose(v["mean"], lut[k]["mean"]) and math.isclose(v["var"], lut[k]["var"])
    by_key = {r["op_key"]: r for r in rows}
    skip_row = [r for r in by_key.values() if r["expand"] == 6][0]
    assert skip_row["residual"] == "add" and skip_row["in_ch"] == 24


def test_our_table_exports_expressible_rows_only():
    ops = get_space("nasbench-macro").operator_configs()
    rows = [_row(lc) for lc in ops]
    text, skipped = export_lut(rows)
    entries = parse_lut(text)
    # a head row is a Conv_1 entry plus a (shared, zero) Logits entry
    assert len([k for k in entries if not k.startswith("Logits")]) + skipped == len(rows)
    assert skipped == sum(1 for lc in ops if lc.op not in ("mbconv", "stem", "head"))


@pytest.mark.parametrize("text, needle", [
    ("expanded_conv-input:1x1x1-output:1x1x1-expand:1-kernel:3-stride:1-idskip:0:\n  count: x\n  mean: 1\n  var: 0\n", ":2: count"),
    ("garbage line here\n", ":1: not a LUT key"),
    ("  count: 3\n", ":1: value before"),
    ("expanded_conv-input:1x1x1-output:1x1x1-expand:1-kernel:3-stride:1-idskip:0:\n  count: 3\n", "lacks"),
])
def test_bad_lut_names_line(text, needle):
    with pytest.raises(TableError, match=needle):
        parse_lut(text, "f.yaml")


def test_table_append_read_and_torn_row(tmp_path):
    ops = get_space("nasbench-macro").operator_configs()
    t = Table.ops(tmp_path / "x_ops.csv")
    t.append([_row(ops[0]), _row(ops[1])])
    assert [r["op_key"] for r in t.read()] == [ops[0].key(), ops[1].key()]
    with open(t.path, "ab") as f:
        f.write(b"mbconv_i8x8,mbconv,8")  # a torn row: no newline
    with pytest.raises(TableError, match=r"x_ops.csv:4: torn last row"):
        t.read()
    assert t.done_keys() == {ops[0].key(), ops[1].key()}  # repaired
    assert t.path.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("mutate, needle", [
    (lambda lines: lines[:1] + [lines[1].replace(",30,", ",thirty,")] + lines[2:], ":2: column 'n_runs'"),
    (lambda lines: lines + [lines[1]], ":4: duplicate op_key"),
    (lambda lines: ["a,b,c"] + lines[1:], ":1: not a 'op_key' latency table"),
    (lambda lines: lines[:2] + [lines[2] + ",extra"], ":3: expected"),
])
def test_corrupt_table_names_file_and_line(tmp_path, mutate, needle):
    ops = get_space("nasbench-macro").operator_configs()
    t = Table.ops(tmp_path / "y_ops.csv")
    t.append([_row(ops[0]), _row(ops[1])])
    lines = t.path.read_text().splitlines()
    t.path.write_text("\n".join(mutate(lines)) + "\n")
    with pytest.raises(TableError, match=needle):
        validate_table(t.path)


def test_foreign_file_names(tmp_path):
    p = tmp_path / "foo_ops.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TableError, match="foo_ops.csv"):
        Table.ops(p).read(repair=False)
    with pytest.raises(TableError, match="expected a file named"):
        validate_table(Path(__file__))


def _mnas(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True,
                          env=env, **kw)


def _const_fn(levels):
    """A (warmup, runs) -> ms function returning levels[k] on its k-th call (last one after)."""
    calls = []

    def fn(warmup, runs):
        v = levels[min(len(calls), len(levels) - 1)]
        calls.append(v)
        return np.full(runs, v)

    fn.calls = calls
    return fn


def test_drift_guard_retimes_a_drifted_chunk_and_keeps_the_closest_attempt():
    from surrogate.measure.timing import DriftGuard, MeasureSettings

    s = MeasureSettings(warmup=0, runs=3, rounds=2, reference_every=0, max_drift=0.05, drift_retries=2)
    g = DriftGuard(s, baseline_ms=1.0)
    # the reference is timed rounds + 1 = 3 times per attempt: slow (1.3), then back (1.01)
    ref = _const_fn([1.3] * 3 + [1.01] * 3)
    item = _const_fn([2.6] * 2 + [2.0] * 2)
    rep = g.measure_chunk({"a": item}, ("ref", ref), seed=0)
    assert rep.results["a"].median_ms == pytest.approx(2.0)  # the retry's figures are kept
    assert (g.retried_chunks, g.retries, g.unresolved_chunks) == (1, 1, 0)
    # within tolerance: no retry
    ok = DriftGuard(s, baseline_ms=1.0)
    ok.measure_chunk({"a": _const_fn([2.0])}, ("ref", _const_fn([1.04])), seed=0)
    assert ok.retries == 0


def test_drift_guard_gives_up_on_a_lasting_shift_and_sets_a_baseline():
    from surrogate.measure.timing import DriftGuard, MeasureSettings

    s = MeasureSettings(warmup=0, runs=2, rounds=1, reference_every=0, max_drift=0.05, drift_retries=2)
    g = DriftGuard(s, baseline_ms=1.0)
    for _ in range(5):  # the host is 30% slower for good
        g.measure_chunk({"a": _const_fn([2.6])}, ("ref", _const_fn([1.3])), seed=0)
    # 3 chunks retried twice each, then retries pause; every chunk is unresolved
    assert (g.retries, g.unresolved_chunks) == (6, 5)
    fresh = DriftGuard(s)  # empty table: the first chunk sets the baseline, nothing retried
    fresh.measure_chunk({"a": _const_fn([2.0])}, ("ref", _const_fn([0.8])), seed=0)
    assert fresh.baseline_ms == pytest.approx(0.8) and fresh.retries == 0
    off = DriftGuard(MeasureSettings(warmup=0, runs=2, rounds=1, max_drift=0.0), baseline_ms=1.0)
    off.measure_chunk({"a": _const_fn([2.0])}, ("ref", _const_fn([2.0])), seed=0)
    assert off.retries == 0 and off.unresolved_chunks == 0
    with pytest.raises(ValueError, match="max_drift"):
        MeasureSettings(max_drift=-0.1)


ort = pytest.importorskip("onnxruntime")


def test_measure_ops_tiny_subset(tmp_path):
    from surrogate.measure.jobs import measure_ops
    from surrogate.measure.timing import MeasureSettings

    before = os.sched_getaffinity(0)
    s = measure_ops("cpu-onnxruntime", "nasbench-macro", out_dir=tmp_path, limit=4, chunk=2,
                    settings=MeasureSettings(warmup=1, runs=3, rounds=2), cache_dir=tmp_path / "c",
                    progress=False)
    assert (s.measured, s.total) == (4, 4)
    assert os.sched_getaffinity(0) == before  # timing pinned one core; the caller gets all back
    table = tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv"
    info = validate_table(table)
    assert info["rows"] == 4 and info["coverage"]["covered"] == 4 and info["coverage"]["missing"] > 0
    assert [p for p in info["problems"] if not p.startswith("covers 4 of the")] == []  # only that
    prov = json.loads((table.parent / "nasbench-macro_ops.provenance.json").read_text())
    assert prov["host"]["cpu_model"] and prov["settings"]["rounds"] == 2
    assert prov["profile"]["name"] == "cpu-onnxruntime" and prov["rows"] == 4
    guard = prov["sessions"][-1]["drift_guard"]
    assert guard["baseline_ref_ms"] > 0 and guard["max_drift"] == 0.05
    # rerun: nothing left to do, no duplicates
    s2 = measure_ops("cpu-onnxruntime", "nasbench-macro", out_dir=tmp_path, limit=4, chunk=2,
                     settings=MeasureSettings(warmup=1, runs=3, rounds=2), cache_dir=tmp_path / "c",
                     progress=False)
    assert (s2.measured, s2.skipped) == (0, 4)
    assert len(Table.ops(table).read()) == 4


def test_convert_only_fills_the_cache_and_times_nothing(tmp_path):
    from surrogate.measure.export import ExportCache
    from surrogate.measure.jobs import measure_ops

    s = measure_ops("cpu-onnxruntime", "nasbench-macro", out_dir=tmp_path, limit=3,
                    cache_dir=tmp_path / "c", progress=False, convert_only=True)
    assert s.convert_only and s.measured == 0 and not s.interrupted
    assert not (tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv").exists()
    assert len(list((tmp_path / "c").glob("*.onnx"))) == 4  # 3 operators + the reference op
    prov = json.loads((tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.provenance.json").read_text())
    assert prov["conversions"][-1]["models"] == 4 and prov["conversions"][-1]["convert_s"] > 0
    # complete table: nothing converted or timed, provenance untouched
    measure_ops("cpu-onnxruntime", "nasbench-macro", out_dir=tmp_path, limit=3, cache_dir=tmp_path / "c",
                progress=False)
    before = (tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.provenance.json").read_text()
    again = measure_ops("cpu-onnxruntime", "nasbench-macro", out_dir=tmp_path, limit=3,
                        cache_dir=tmp_path / "c", progress=False)
    assert (again.measured, again.skipped) == (0, 3)
    assert (tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.provenance.json").read_text() == before
    # the timing run that follows converts nothing
    cache = ExportCache(tmp_path / "c")
    from space.build import build_op, op_input_shape
    from space.spaces import get_space

    for lc in get_space("nasbench-macro").operator_configs()[:3]:
        assert cache.export(build_op(lc), op_input_shape(lc), "onnx").cached


def test_cached_only_times_just_the_converted_rows(tmp_path):
    """`--cached-only`: nothing converts beside the timing; the rest waits for a later run."""
    from space.build import build_op, op_input_shape
    from surrogate.measure.export import ExportCache
    from surrogate.measure.jobs import measure_ops
    from surrogate.measure.timing import MeasureSettings

    ops = get_space("nasbench-macro").operator_configs()[:4]
    cache = ExportCache(tmp_path / "c")
    for lc in ops[:2]:  # two of four converted ahead
        cache.export(build_op(lc), op_input_shape(lc), "onnx")
    kw = dict(out_dir=tmp_path, limit=4, chunk=4, cache_dir=tmp_path / "c", progress=False,
              settings=MeasureSettings(warmup=1, runs=3, rounds=2))
    s = measure_ops("cpu-onnxruntime", "nasbench-macro", cached_only=True, **kw)
    assert (s.measured, s.not_converted, s.skipped) == (2, 2, 0)
    done = Table.ops(tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv").done_keys()
    assert set(done) == {lc.key() for lc in ops[:2]}
    onnx = {p.name for p in (tmp_path / "c").glob("*.onnx")}
    assert len(onnx) == 3  # the two operators + the reference op: nothing else was converted
    s2 = measure_ops("cpu-onnxruntime", "nasbench-macro", **kw)  # a normal run finishes the table
    assert (s2.measured, s2.skipped, s2.not_converted) == (2, 2, 0)


def test_measure_ops_for_given_architectures_only(tmp_path):
    """`mnas measure ops --archs FILE` times just the operators those networks use."""
    from space.spaces import get_space

    sp = get_space("nasbench-macro")
    archs = [sp.to_arch(i) for i in sp.sample_indices(np.random.default_rng(3), 2)]
    want = {lc.key() for a in archs for lc in a.ops() if not lc.is_identity}
    f = tmp_path / "archs.txt"
    f.write_text("\n".join(str(a) for a in archs) + "\n")
    env = {**os.environ, "MNAS_CACHE_DIR": str(tmp_path / "c")}
    r = _mnas("measure", "ops", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro",
              "--archs", str(f), "--out", str(tmp_path), "--runs", "2", "--rounds", "1",
              "--warmup", "1", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    rows = Table.ops(tmp_path / "cpu-onnxruntime" / "nasbench-macro_ops.csv").read()
    assert {row["op_key"] for row in rows} == want


def test_sigkill_then_resume_has_no_duplicate_or_torn_rows(tmp_path):
    env = {**os.environ, "MNAS_CACHE_DIR": str(tmp_path / "cache")}
    table = tmp_path / "cpu-onnxruntime" / "nasbench-macro_models.csv"
    args = ["measure", "models", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro",
            "--random", "12", "--seed", "3", "--out", str(tmp_path), "--chunk", "2",
            "--warmup", "1", "--runs", "5", "--rounds", "2", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if table.exists() and table.read_text().count("\n") >= 3:  # header + 2 rows
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = Table.models(table).done_keys()
    assert 0 < len(partial) < 12
    prov_p = table.with_name("nasbench-macro_models.provenance.json")
    killed = json.loads(prov_p.read_text())  # written at the start and after every chunk
    assert [x["status"] for x in killed["sessions"]] == ["running"]
    assert killed["rows"] <= len(partial)
    if killed["rows"]:  # the kill may fall between a chunk's rows and its checkpoint
        assert killed["reference_base_ms"] > 0
    done = _mnas(*args, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    prov = json.loads(prov_p.read_text())
    assert [x["status"] for x in prov["sessions"]] == ["killed", "finished"]
    if killed["rows"]:
        assert prov["reference_base_ms"] == killed["reference_base_ms"]
    assert prov["sessions"][0]["started"] == killed["sessions"][0]["started"]
    assert prov["rows"] == 12 and prov["table_sha256"] == file_sha256(table)
    rows = Table.models(table).read()
    keys = [r["arch"] for r in rows]
    sp = get_space("nasbench-macro")
    import numpy as np

    want = {str(sp.to_arch(i)) for i in sp.sample_indices(np.random.default_rng(3), 12)}
    assert len(keys) == len(set(keys)) == len(want)
    assert set(keys) == want and partial <= set(keys)


def test_measure_cli_bad_input():
    p = _mnas("measure", "ops", "--profile", "cpu-nope", "--space", "anb")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    p = _mnas("measure", "models", "--profile", "cpu-onnxruntime", "--random", "3")
    assert p.returncode == 2 and "--space" in p.stderr
    p = _mnas("measure", "ops", "--profile", "cuda-torch", "--space", "anb")
    assert p.returncode == 2 and "cannot run here" in p.stderr and "Traceback" not in p.stderr
    p = _mnas("measure", "ops", "--profile", "cpu-onnxruntime", "--space", "nasbench-macro",
              "--convert-only", "--cached-only")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "--cached-only" in p.stderr and "not allowed with" in p.stderr


def test_profile_reference_baseline_pools_the_profiles_tables(tmp_path):
    """The drift guard's yardstick: row-weighted median over the profile's provenance files,
    so a new table whose first chunk fell in a slow spell is still judged by the usual time."""
    from surrogate.tables import REFERENCE_OP, profile_reference_baseline

    assert profile_reference_baseline(tmp_path) is None

    def prov(name, med, rows, op=REFERENCE_OP.key()):
        (tmp_path / f"{name}.provenance.json").write_text(json.dumps(
            {"reference_op": op, "rows": rows, "reference_ms": {"median": med}}))

    prov("big_ops", 0.47, 3000)
    prov("slow_models", 0.60, 32)
    prov("other_op_models", 9.0, 10_000, op="mbconv_something_else")
    (tmp_path / "torn.provenance.json").write_text("{not json")
    assert profile_reference_baseline(tmp_path) == pytest.approx(0.47)
    prov("slow_models", 0.60, 5000)
    assert profile_reference_baseline(tmp_path) == pytest.approx(0.60)


def test_validate_rejects_empty_and_header_only_tables(tmp_path):
    empty = tmp_path / "anb_models.csv"
    empty.write_text("")
    with pytest.raises(TableError, match="anb_models.csv: empty file"):
        validate_table(empty)
    ops = get_space("nasbench-macro").operator_configs()
    t = Table.ops(tmp_path / "nasbench-macro_ops.csv")
    t.append([_row(ops[0])])
    header = t.path.read_text().splitlines()[0]
    t.path.write_text(header + "\n")
    with pytest.raises(TableError, match="nasbench-macro_ops.csv: no rows"):
        validate_table(t.path)
    r = _mnas("table", "validate", str(empty))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "anb_models.csv" in r.stderr


def test_validate_checks_the_provenance_hash_and_warns_on_partial_coverage(tmp_path):
    ops = get_space("nasbench-macro").operator_configs()
    t = Table.ops(tmp_path / "nasbench-macro_ops.csv")
    t.append([_row(ops[0]), _row(ops[1])])
    prov = {"profile": {}, "space": "nasbench-macro", "host": {}, "settings": {}, "created": "x",
            "updated": "x", "rows": 2, "table_sha256": file_sha256(t.path)}
    (tmp_path / "nasbench-macro_ops.provenance.json").write_text(json.dumps(prov))
    info = validate_table(t.path)
    assert info["coverage"] == {"space": "nasbench-macro", "needed": len(ops), "covered": 2,
                                "missing": len(ops) - 2}
    assert any(f"covers 2 of the {len(ops)} operators" in p for p in info["problems"])
    t.append([_row(ops[2])])  # the table changes after its provenance was written
    with pytest.raises(TableError, match="does not match .* in nasbench-macro_ops.provenance.json"):
        validate_table(t.path)
    r = _mnas("table", "validate", str(t.path))
    assert r.returncode == 2 and "nasbench-macro_ops.csv: sha256" in r.stderr and "Traceback" not in r.stderr
