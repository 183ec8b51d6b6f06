"""surrogate.measure.ondemand: the host operator table behind the phone predictors, with
the operators it lacks measured now (same host kind, runtime present) or modelled."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from space import parse_arch
from space.reference import resolve_arch
from surrogate.measure.ondemand import OpsReport, ensure_ops, host_op_table, reference_configs
from surrogate.predict.oplevel import op_cost
from surrogate.predict.optable import OpTable

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data" / "latency_tables" / "cpu-litert" / "reference_ops.csv"
NAMES = ("mnasnet-a1", "mobilenetv2-1.0", "fbnet-c", "proxylessnas-mobile", "mnasnet-a1@w0.75,r192")
SKIPPY = ("r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24,"
          "r2_k3_s11_e1_i24_o24_skip,r1_k3_s11_e6_i24_o320")


def _table(archs, drop=()) -> OpTable:
    """Host ms from MAdds for every operator of ``archs`` but the keys in ``drop``."""
    ent = {lc.key(): op_cost(lc)[0] / 1e7 + 0.005 for a in archs for lc in a.ops() if not lc.is_identity}
    return OpTable({k: v for k, v in ent.items() if k not in drop}, profile="cpu-litert",
                   space="reference", source=None)


def test_reference_configs_dedups_and_skips_identity_ops():
    a, b, s = resolve_arch("mnasnet-a1"), resolve_arch("mobilenetv2-1.0"), parse_arch(SKIPPY)
    cf = reference_configs([a, b, a, s])
    keys = [lc.key() for lc in cf]
    assert keys == sorted(set(keys))
    assert not any(lc.is_identity for lc in cf)
    want = {lc.key() for x in (a, b, s) for lc in x.ops() if not lc.is_identity}
    assert set(keys) == want
    assert len([lc for lc in a.ops()]) > len(reference_configs([a]))  # repeated blocks share a key
    assert reference_configs([]) == []
    assert [lc.key() for lc in reference_configs([s])] == sorted(
        {lc.key() for lc in s.ops() if lc.op != "skip"})


def test_all_present_returns_the_same_table():
    archs = [resolve_arch(n) for n in NAMES]
    tab = _table(archs)
    out, rep = ensure_ops(archs, tab)  # measure=True, but nothing is missing
    assert out is tab
    assert rep == OpsReport(len(reference_configs(archs)), 0, 0)
    assert rep.measured_now == 0 and rep.note == ""


def test_missing_ops_are_modelled_when_not_measuring():
    pytest.importorskip("xgboost")
    archs = [resolve_arch(n) for n in NAMES]
    a = archs[0]
    drop = [lc.key() for lc in reference_configs([a])][3:5]
    tab = _table(archs, drop)
    out, rep = ensure_ops([a], tab, measure=False)
    assert (rep.found, rep.measured_now, rep.modelled) == (len(reference_configs([a])) - 2, 0, 2)
    assert "2 operator(s) modelled" in rep.note and "not asked" in rep.note
    assert out is not tab and tab.fallback is None and out.entries == tab.entries
    s = out.sum(a)
    assert (s.modelled, s.missing) == (2, 0) and np.isfinite(s.ms) and s.ms > 0
    for k in drop:
        lc = next(lc for lc in a.ops() if lc.key() == k)
        assert 0 < out(lc) < 100 * max(tab.entries.values())
    assert np.isnan(tab.sum(a).ms)  # the input table is left alone


def test_measuring_without_a_table_file_models_and_says_why():
    pytest.importorskip("xgboost")
    a = resolve_arch("mnasnet-a1")
    drop = [reference_configs([a])[0].key()]
    out, rep = ensure_ops([a, resolve_arch("fbnet-c")], _table([a, resolve_arch("fbnet-c")], drop))
    assert (rep.measured_now, rep.modelled) == (0, 1) and "no file" in rep.note
    assert np.isfinite(out.sum(a).ms)


def test_host_op_table_names_a_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnas measure ops"):
        host_op_table("cpu-litert", root=tmp_path)


@pytest.mark.slow
def test_missing_ops_measured_into_the_host_cache(tmp_path, monkeypatch):
    """Same host kind and runtime present: exactly the missing operators are timed into
    $MNAS_HOME's host cache; otherwise they are modelled and the note says why."""
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} is absent")
    from surrogate.measure.host import host_match
    from surrogate.measure.hostjob import host_tables_dir
    from surrogate.tables import file_sha256

    monkeypatch.setenv("MNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNAS_CACHE_DIR", str(tmp_path / "cache"))
    a = resolve_arch("mnasnet-a1")
    keys = [lc.key() for lc in reference_configs([a])]
    drop = set(keys[3:5])
    dest = tmp_path / "tables" / "cpu-litert"
    dest.mkdir(parents=True)
    csv_path = dest / SHIPPED.name
    with open(SHIPPED, newline="") as src, open(csv_path, "w", newline="") as dst:
        r = csv.DictReader(src)
        w = csv.DictWriter(dst, r.fieldnames, lineterminator="\n")
        w.writeheader()
        w.writerows(row for row in r if row["op_key"] not in drop)  # the table lacks them
    shutil.copy(SHIPPED.with_suffix(".provenance.json"), dest / "reference_ops.provenance.json")
    before = file_sha256(SHIPPED)
    full = OpTable.from_csv(csv_path)
    assert set(keys) - set(full.entries) == drop, "the shipped table lacks mnasnet-a1's operators"
    tab = OpTable({k: full.entries[k] for k in keys if k not in drop}, profile="cpu-litert",
                  space="reference", sha256=full.sha256, source=str(csv_path))
    same = host_match(csv_path).same is True
    runtime = True
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        runtime = False
    out, rep = ensure_ops([a], tab)
    assert rep.found == len(keys) - 2
    if same and runtime:
        assert (rep.measured_now, rep.modelled) == (2, 0), rep
        cache = host_tables_dir() / "cpu-litert" / "reference_ops.csv"
        assert cache.is_file() and str(tmp_path) in str(cache) and str(cache) in rep.note
        with open(cache, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert {r["op_key"] for r in rows} == drop
        assert all(float(r["median_ms"]) > 0 for r in rows)
        assert set(keys) <= set(out.entries) and out.fallback is None
        assert all(out.entries[k] == tab.entries[k] for k in tab.entries)  # measured rows stay
        again, rep2 = ensure_ops([a], out)
        assert again is out and rep2.measured_now == 0
        merged = host_op_table("cpu-litert", root=tmp_path / "tables")  # table + this host's cache
        assert drop <= set(merged.entries) and len(merged) == len(full) + 2
    else:  # (the fallback model needs xgboost)
        assert (rep.measured_now, rep.modelled) == (0, 2), rep
        assert ("host kind" in rep.note) if not same else ("runtime" in rep.note)
        assert np.isfinite(out.sum(a).ms)
    assert file_sha256(SHIPPED) == before  # never written into the shipped table


def test_another_host_kind_models_instead_of_measuring(tmp_path, monkeypatch):
    """A table timed on another host kind is never extended here: its gaps are modelled."""
    pytest.importorskip("xgboost")
    import surrogate.measure.host as host

    monkeypatch.setenv("MNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(host, "host_match", lambda *a, **k: type("M", (), {"same": False})())
    archs = [resolve_arch(n) for n in NAMES]
    a = archs[0]
    drop = [lc.key() for lc in reference_configs([a])][:2]
    path = tmp_path / "reference_ops.csv"
    path.write_text("stand-in: only its existence is checked before the host\n")
    tab = _table(archs, drop)
    tab.source = str(path)
    out, rep = ensure_ops([a], tab)
    assert (rep.measured_now, rep.modelled) == (0, 2) and "host kind" in rep.note
    assert not (tmp_path / "home").exists()  # nothing measured, no cache written
    assert out.sum(a).modelled == 2
