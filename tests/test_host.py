"""Host identity: what kind of machine timed a table, and whether it is this one."""
from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path

import pytest

from surrogate.measure.host import (ARM_ISA, X86_ISA, HostMatch, compare_hosts, compute_host_id,
                                    host_identity, host_match, predictor_table, table_reference_ms)
from surrogate.measure.profiles import get_profile
from surrogate.tables import Table, provenance_path, write_json_atomic

LINUX = Path("/proc/cpuinfo").is_file()


@pytest.fixture(scope="module")
def here() -> dict:
    return host_identity()


def _table(tmp_path: Path, host: dict, name: str = "anb_models.csv", ref_ms: float = 0.45) -> Path:
    """A header-only models table with a provenance whose ``host`` is ``host``."""
    path = tmp_path / name
    path.write_text(",".join(Table.models(path).columns) + "\n")
    write_json_atomic(provenance_path(path), {"kind": "models", "host": host, "rows": 0,
                                              "reference_ms": {"median": ref_ms}, "sessions": []})
    return path


@pytest.mark.skipif(not LINUX, reason="reads /proc/cpuinfo")
def test_identity_fields_on_this_machine(here):
    assert here["model_name"] and here["machine"] == platform.machine()
    assert here["kernel"] == platform.release()
    assert here["cpu_count"] >= 1 and 1 <= here["cpus_allowed"] <= here["cpu_count"]
    assert here["memory_total_mib"] > 0
    assert set(here["isa"]) <= set(here["isa_checked"])
    assert re.fullmatch(r"[0-9a-f]{16}", here["host_id"])
    if here["arch"] == "x86":
        assert all(isinstance(here[k], int) for k in ("family", "model", "stepping"))
        assert here["vendor"] and "sse2" in here["isa"] and here["isa_checked"] == list(X86_ISA)
    elif here["arch"] == "arm":
        assert here["part"] and here["isa_checked"] == list(ARM_ISA)
    if Path("/sys/devices/system/cpu/cpu0/cache/index0").is_dir():
        assert here["caches_kib"] and all(v > 0 for v in here["caches_kib"].values())
    json.dumps(here)  # provenance-ready


def test_host_id_stable_and_sensitive_only_to_latency_fields(here):
    assert host_identity()["host_id"] == here["host_id"] == compute_host_id(here)
    assert compute_host_id({**here, "kernel": "9.9", "cpu_count": 96, "memory_total_mib": 1,
                            "microcode": "0xdead", "date_utc": "x"}) == here["host_id"]
    extra = next(f for f in here["isa_checked"] or X86_ISA if f not in here["isa"])
    assert compute_host_id({**here, "isa": here["isa"] + [extra]}) != here["host_id"]
    caches = {**here["caches_kib"], "L2": here["caches_kib"].get("L2", 0) + 512}
    assert compute_host_id({**here, "caches_kib": caches}) != here["host_id"]
    assert compute_host_id({**here, "stepping": (here.get("stepping") or 0) + 1}) != here["host_id"]


def test_arm_cpuinfo_is_parsed():
    text = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes asimdhp "
            "asimddp i8mm bf16 sve\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            "CPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n")
    ident = host_identity(cpuinfo=text)
    assert ident["arch"] == "arm" and ident["part"] == "0xd40" and ident["vendor"] == "Arm"
    assert ident["model_name"] == "Arm Neoverse-V1" and ident["microarchitecture"] == "Neoverse-V1"
    assert ident["isa"] == ["asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve"]
    assert host_identity(cpuinfo="")["model_name"]  # nothing readable: still an identity


def test_compare_hosts_names_flag_and_cache(here):
    assert compare_hosts(here, dict(here)) == []
    b = {**here, "isa": [f for f in here["isa"] if f != "avx2"] if "avx2" in here["isa"]
         else here["isa"] + ["avx2"], "caches_kib": {**here["caches_kib"], "L3": 1024}}
    diffs = compare_hosts(here, b, labels=("A", "B"))
    assert len(diffs) == 2
    assert any("avx2" in d and "missing" in d for d in diffs)
    assert any(d.startswith("L3 cache:") and "1M (B)" in d for d in diffs)
    assert compare_hosts(here, {**here, "kernel": "other", "cpu_count": 64}) == []
    old = compare_hosts({"cpu_model": "AMD EPYC"}, here)  # legacy provenance: no crash
    assert old and any("unknown" in d for d in old)
    with pytest.raises(ValueError, match="two identity dicts"):
        compare_hosts(here, None)


def test_old_provenance_cannot_tell(tmp_path, here):
    t = _table(tmp_path, {"cpu_model": here["model_name"], "cpu_count": 2, "machine": here["machine"]})
    m = host_match(t, this_host=here)
    assert m.same is None and len(m.differences) == 1
    assert "predates host identity" in m.differences[0] and "cpu_model" in m.differences[0]
    assert m.reference_ms_table == pytest.approx(0.45) and m.reference_ms_here is None
    text = "\n".join(m.explain("anb"))
    assert "cannot be told" in text and "mnas measure host --space anb" in text
    other = host_match(_table(tmp_path, {"cpu_model": "Some Other CPU", "machine": "riscv64"},
                              "b_models.csv"), this_host=here)
    assert other.same is False and "riscv64" in other.differences[0]


def test_table_written_by_host_info_matches(tmp_path, here):
    t = _table(tmp_path, get_profile("cpu-litert").host_info())
    m = host_match(t, reference_ms_here=0.5)
    assert isinstance(m, HostMatch) and m.same is True and m.differences == []
    assert m.table_host["host_id"] == m.this_host["host_id"]
    assert m.reference_ratio == pytest.approx(0.5 / 0.45)
    assert table_reference_ms(t) == pytest.approx(0.45)
    prov = json.loads(provenance_path(t).read_text())
    write_json_atomic(provenance_path(t), {**prov, "sessions": [{"wall_s": 1}, {"wall_s": 2}]})
    assert any("latest of its 2 sessions" in n for n in host_match(t).notes)
    moved = {**m.table_host, "isa": m.table_host["isa"] + ["amx_tile"]}
    m2 = host_match(_table(tmp_path, {"host": moved}, "c_models.csv"), this_host=here)
    assert m2.same is False and any("amx_tile" in d for d in m2.differences)
    assert "another host" in m2.explain("anb")[0]
    with pytest.raises(FileNotFoundError, match="no latency table"):
        host_match(tmp_path / "nope_ops.csv")


def test_predictor_table_and_sweep_message(tmp_path, here, monkeypatch):
    shipped = Path(__file__).resolve().parents[1] / "surrogate" / "data" / "predictors" / "cpu-litert" / "anb"
    if (shipped / "meta.json").is_file():
        assert predictor_table(shipped, "cpu-litert", "anb").name == "anb_ops.csv"
    from search.sweep import SweepResult, finalists_host_match

    (tmp_path / "cpu-litert").mkdir()
    _table(tmp_path / "cpu-litert", {"cpu_model": "AMD EPYC"}, "anb_models.csv")
    monkeypatch.setenv("MNAS_TABLES_DIR", str(tmp_path))
    res = SweepResult(config={"profile": "cpu-litert", "space": "anb"}, trials=1, evaluated_here=1,
                      pareto=[], hypervolume=0.0, hypervolume_reference={}, latency_target_ms=1.0,
                      wall_s=1.0, trials_per_s=1.0, latency={"kind": "measured"},
                      finalists=[{"flag": True}])
    d = finalists_host_match(res, 0.187)
    assert d["same"] is None and d["flagged"] and 1 <= len(d["message"]) <= 3
    assert "mnas measure host --space anb" in d["message"][-1]
    assert d["reference_ratio"] == pytest.approx(0.187 / 0.45)
    res.finalists = [{"flag": False}]
    assert finalists_host_match(res)["message"] == []


def test_cli_host_json_and_bad_profile(tmp_path, capsys, here):
    from search.cli import main

    (tmp_path / "cpu-litert").mkdir()
    _table(tmp_path / "cpu-litert", get_profile("cpu-litert").host_info(), "anb_models.csv")
    _table(tmp_path / "cpu-litert", {"cpu_model": "AMD EPYC"}, "anb_ops.csv")
    assert main(["host", "--json", "--tables", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["host"]["host_id"] == here["host_id"]
    same = {r["table"]: r["same"] for r in out["tables"]}
    assert same == {"anb_models.csv": True, "anb_ops.csv": None}
    assert main(["host", "--tables", str(tmp_path), "--profile", "cpu-litert"]) == 0
    text = capsys.readouterr().out
    assert "this host:" in text and "this host kind" in text and "cannot tell" in text
    assert main(["host", "--profile", "no-such-profile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-profile" in err[0]


def test_host_module_imports_no_torch():
    import subprocess

    code = "import sys, surrogate.measure.host as h; h.host_identity(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
