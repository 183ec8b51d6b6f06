"""ProxylessNAS/OFA LUT interop: round trip, stem/head entries, activation, coverage, CLI."""
from __future__ import annotations

import math
import re
import warnings

import pytest

from search.cli import main
from space import get_reference, get_space
from surrogate.lut import export_lut, import_lut, lut_to_rows, parse_lut
from surrogate.tables import Table, op_row_key, tables_dir

MBV2 = get_reference("mobilenetv2-1.0")  # relu6, no SE: every operator is expressible


def _rows(arch, ms: float = 1.0) -> list[dict]:
    """Synthetic timed rows for every operator of ``arch`` (distinct times)."""
    rows = {}
    for i, lc in enumerate(arch.ops()):
        mean = ms + 0.01 * i
        rows[lc.key()] = {**op_row_key(lc), "median_ms": mean, "std_ms": 0.1 * mean, "n_runs": 7 + i}
    return list(rows.values())


def _strip_comments(text: str) -> str:
    return "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("#"))


def test_export_import_round_trips_shipped_table():
    rows = Table.ops(tables_dir() / "cpu-litert" / "nasbench-macro_ops.csv").read()
    text, skipped = export_lut(rows)
    res = import_lut(text)
    assert res.act_source == "comment" and len(res.rows) + skipped == len(rows)
    want = {r["op_key"]: r for r in rows}
    assert {r["op"] for r in res.rows} >= {"stem", "head"}
    for r in res.rows:
        w = want[r["op_key"]]
        assert r["median_ms"] == pytest.approx(w["median_ms"])
        assert r["std_ms"] == pytest.approx(w["std_ms"])
        assert r["n_runs"] == w["n_runs"]
    # and the imported rows write and read back as an operator table
    assert {k: v for k, v in parse_lut(export_lut(res.rows)[0]).items()} == parse_lut(text)


def test_stem_head_and_classifier_entries_are_kept():
    text, skipped = export_lut(_rows(MBV2))
    assert skipped == 0 and "Conv-input:224x224x3-output:112x112x32:" in text
    assert "Conv_1-input:7x7x320-output:7x7x1280:" in text and "Logits-input:7x7x1280-output:1000:" in text
    res = import_lut(text, target=MBV2.ops(), target_name="mbv2")
    assert res.matched_ops == res.target_ops == len({lc.key() for lc in MBV2.ops()})
    total = sum(r["median_ms"] for r in _rows(MBV2))
    assert sum(r["median_ms"] for r in res.rows) == pytest.approx(total)


def test_proxyless_head_sums_conv1_pool_and_logits():
    lut = ("Conv_1-input:7x7x320-output:7x7x1280:\n  count: 3\n  mean: 1.0\n  var: 0.01\n"
           "AvgPool2D-input:7x7x1280-output:1x1x1280:\n  count: 3\n  mean: 0.25\n  var: 0.0\n"
           "Logits-input:1x1x1280-output:1000:\n  count: 3\n  mean: 0.5\n  var: 0.03\n"
           "Conv_2-input:1x1x960-output:1x1x1280:\n  count: 3\n  mean: 0.5\n  var: 0.0\n")
    res = import_lut(lut, act="relu6")
    (head,) = res.rows
    assert head["op"] == "head" and head["out_ch"] == 1280 and head["num_classes"] == 1000
    assert head["median_ms"] == pytest.approx(1.75) and head["std_ms"] == pytest.approx(0.2)
    assert res.left_out == {"Conv_2": 1}


def test_activation_read_from_file_and_mismatch_warned():
    text = _strip_comments(export_lut(_rows(MBV2))[0])
    res = import_lut(text)  # no comment: the ProxylessNAS format's ReLU6, whatever the target
    assert (res.act, res.act_source) == ("relu6", "format") and res.target is None
    res = import_lut(text, target=MBV2.ops(), target_name="mobilenetv2-1.0")
    assert res.act == "relu6" and res.act_source == "format" and res.matched_ops == res.target_ops
    with pytest.warns(UserWarning, match=r"activation relu \(given\) is not that of mobilenetv2-1.0 "
                                         r"\(relu6\): it covers 0 of \d+ .*with act relu6, \d+ match"):
        bad = import_lut(text, act="relu", target=MBV2.ops(), target_name="mobilenetv2-1.0")
    assert bad.matched_ops == 0 and bad.rows  # rows are still written, as asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_lut(text, act="relu6", target=MBV2.ops())
    # the '# act:' comment export writes is the file's activation too
    relu_rows = [{**r, "act": "relu", "op_key": r["op_key"].replace("_relu6", "_relu")}
                 for r in _rows(MBV2)]
    with pytest.warns(UserWarning, match=r"relu \(its '# act:' comment\) is not that of mbv2 \(relu6\)"):
        res = import_lut(export_lut(relu_rows)[0], target=MBV2.ops(), target_name="mbv2")
    assert (res.act, res.act_source, res.matched_ops) == ("relu", "comment", 0)


def test_lut_to_rows_rejects_unknown_act():
    with pytest.raises(ValueError, match="act must be one of"):
        lut_to_rows({}, act="gelu")


def test_cli_convert_refuses_missing_folder(tmp_path, capsys):
    src = tables_dir() / "cpu-litert" / "nasbench-macro_ops.csv"
    rc = main(["table", "convert", str(src), str(tmp_path / "nope" / "out.lut")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope").exists()


def test_cli_convert_round_trip_and_coverage(tmp_path, capsys):
    src = tables_dir() / "cpu-litert" / "nasbench-macro_ops.csv"
    assert main(["table", "convert", str(src), str(tmp_path / "m.lut")]) == 0
    dst = tmp_path / "nasbench-macro_ops.csv"
    assert main(["table", "convert", str(tmp_path / "m.lut"), str(dst)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"covers [1-9]\d* of \d+ operators of space nasbench-macro", out)
    n_in = len(Table.ops(src).read())
    got = Table.ops(dst).read()
    assert 0 < len(got) <= n_in and all(math.isfinite(r["median_ms"]) for r in got)


def test_cli_relu_default_on_relu6_lut_warns(tmp_path, capsys):
    lut = tmp_path / "mbv2.lut"
    lut.write_text(_strip_comments(export_lut(_rows(MBV2))[0]))
    dst = tmp_path / "mnasnet_ops.csv"
    assert main(["table", "convert", str(lut), str(dst), "--arch", "mobilenetv2-1.0",
                 "--act", "relu"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "0 of" in err and "relu6" in err
    dst.unlink()
    assert main(["table", "convert", str(lut), str(dst), "--arch", "mobilenetv2-1.0"]) == 0
    out, err = capsys.readouterr()
    assert "act relu6 (ProxylessNAS keys: ReLU6)" in out and not err
    dst.unlink()
    # no space or network to check against: the file's own activation all the same
    assert main(["table", "convert", str(lut), str(tmp_path / "custom_ops.csv")]) == 0
    assert "act relu6 (ProxylessNAS keys: ReLU6)" in capsys.readouterr().out


def test_mnasnet_space_coverage_is_reported():
    rows = Table.ops(tables_dir() / "cpu-litert" / "mnasnet_ops.csv").read()
    text, _ = export_lut(rows)
    space = get_space("mnasnet")
    res = import_lut(text, target=space.operator_configs(), target_name="space mnasnet")
    assert 0 < res.matched_ops < res.target_ops == len(space.operator_configs())
    assert f"covers {res.matched_ops} of {res.target_ops}" in res.summary()
