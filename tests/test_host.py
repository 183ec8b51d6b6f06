"""Host identity: what kind of machine timed a table, and whether it is this one.

Tests that compare hosts build BOTH identities themselves (an AMD EPYC Zen 4 and an
Intel Xeon with AMX, below) and make the "current host" one of them by patching
``host_identity``: never "this host plus a flag" or "this host is not X", which
encode the machine the suite was written on (issue N: an Intel host with amx_tile
failed three tests written on an AMD EPYC).
"""
from __future__ import annotations

import copy
import json
import platform
import re
import sys
from pathlib import Path

import pytest

import surrogate.measure.host as host_mod
import surrogate.measure.hostid as hostid_mod
from surrogate.measure.host import (ARM_ISA, X86_ISA, HostMatch, compare_hosts, compute_host_id,
                                    host_identity, host_match, predictor_table, table_reference_ms)
from surrogate.measure.profiles import get_profile
from surrogate.tables import Table, provenance_path, write_json_atomic

LINUX = Path("/proc/cpuinfo").is_file()
_REAL_IDENTITY = hostid_mod.host_identity

_BASE_ISA = ("sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "avx2")
_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512vbmi", "avx512_vnni",
           "avx512_bf16")
AMD_NAME, INTEL_NAME = "AMD EPYC", "Intel(R) Xeon(R) Processor"


def _x86(vendor: str, name: str, family: int, model: int, stepping: int, flags, caches: dict) -> dict:
    """A whole x86 identity, parsed from a made-up /proc/cpuinfo; every latency field explicit."""
    text = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {name}\nstepping\t: {stepping}\nmicrocode\t: 0x1000001\n"
            f"flags\t\t: fpu tsc {' '.join(flags)} hypervisor\n\n")
    ident = _REAL_IDENTITY(cpuinfo=text)
    ident.update(machine="x86_64", caches_kib=dict(caches), cpu_count=2, cpus_allowed=2,
                 cpus_allowed_list="0-1", memory_total_mib=8192, kernel="6.1.0-test", system="Linux",
                 hypervisor_vendor="KVM", dmi_product=None, gpus=[])
    ident["host_id"] = compute_host_id(ident)
    return ident


def amd_epyc() -> dict:
    """AMD EPYC, family 25 model 17 (Zen 4 Genoa): avx512, no amx."""
    return _x86("AuthenticAMD", AMD_NAME, 25, 17, 1, _BASE_ISA + _AVX512,
                {"L1d": 32, "L1i": 32, "L2": 1024, "L3": 32768})


def intel_xeon() -> dict:
    """Intel Xeon, family 6 model 167 with avx512f, amx_tile and amx_int8 (the host of issue N)."""
    return _x86("GenuineIntel", INTEL_NAME, 6, 167, 1, _BASE_ISA + _AVX512 + ("amx_tile", "amx_int8"),
                {"L1d": 48, "L1i": 32, "L2": 2048, "L3": 107520})


HOSTS = {"amd": amd_epyc, "intel": intel_xeon}


def _as_current_host(monkeypatch, ident: dict) -> None:
    """Make ``ident`` this process's host: ``host_identity()`` (cpuinfo=None) returns a copy of it
    wherever it is looked up (``host`` for host_match and the CLI, ``hostid`` for host_info)."""
    def fake(cpuinfo: str | None = None) -> dict:
        return copy.deepcopy(ident) if cpuinfo is None else _REAL_IDENTITY(cpuinfo)

    monkeypatch.setattr(hostid_mod, "host_identity", fake)
    monkeypatch.setattr(host_mod, "host_identity", fake)


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


# -- this machine (asserts that hold on any host) ----------------------------------------
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


def test_table_written_by_host_info_matches(tmp_path, here):
    """Whatever this machine is, a table it wrote is of its kind (written and read here, unpatched)."""
    t = _table(tmp_path, get_profile("cpu-litert").host_info())
    m = host_match(t, reference_ms_here=0.5)
    assert isinstance(m, HostMatch) and m.same is True and m.differences == []
    assert m.table_host["host_id"] == m.this_host["host_id"] == here["host_id"]
    assert m.reference_ratio == pytest.approx(0.5 / 0.45)
    assert table_reference_ms(t) == pytest.approx(0.45)
    prov = json.loads(provenance_path(t).read_text())
    write_json_atomic(provenance_path(t), {**prov, "sessions": [{"wall_s": 1}, {"wall_s": 2}]})
    assert any("latest of its 2 sessions" in n for n in host_match(t).notes)
    with pytest.raises(FileNotFoundError, match="no latency table"):
        host_match(tmp_path / "nope_ops.csv")


def test_host_id_stable_and_sensitive_only_to_latency_fields(here):
    assert host_identity()["host_id"] == here["host_id"] == compute_host_id(here)
    assert compute_host_id({**here, "kernel": "9.9", "cpu_count": 96, "memory_total_mib": 1,
                            "microcode": "0xdead", "date_utc": "x"}) == here["host_id"]
    amd, intel = amd_epyc(), intel_xeon()
    assert amd["host_id"] == amd_epyc()["host_id"] != intel["host_id"]
    for ident, flag in ((amd, "amx_tile"), (intel, "amx_tile")):  # gaining or losing a flag
        isa = [f for f in ident["isa"] if f != flag] if flag in ident["isa"] else ident["isa"] + [flag]
        assert compute_host_id({**ident, "isa": isa}) != ident["host_id"]
        caches = {**ident["caches_kib"], "L2": ident["caches_kib"]["L2"] + 512}
        assert compute_host_id({**ident, "caches_kib": caches}) != ident["host_id"]
        assert compute_host_id({**ident, "stepping": ident["stepping"] + 1}) != ident["host_id"]
        assert compute_host_id({**ident, "cpu_count": 192, "kernel": "x"}) == ident["host_id"]


def test_x86_cpuinfo_is_parsed_amd_and_intel():
    amd, intel = amd_epyc(), intel_xeon()
    assert (amd["arch"], amd["vendor"], amd["family"], amd["model"]) == ("x86", "AuthenticAMD", 25, 17)
    assert amd["model_name"] == AMD_NAME and amd["microarchitecture"] == "Zen 4 (Genoa)"
    assert "avx512f" in amd["isa"] and not any(f.startswith("amx") for f in amd["isa"])
    assert (intel["arch"], intel["vendor"], intel["family"], intel["model"]) == ("x86", "GenuineIntel", 6, 167)
    assert intel["model_name"] == INTEL_NAME
    assert {"avx512f", "amx_tile", "amx_int8"} <= set(intel["isa"]) and "amx_bf16" not in intel["isa"]
    assert amd["hypervisor"] is True and intel["isa_checked"] == list(X86_ISA)


def test_arm_cpuinfo_is_parsed():
    text = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes asimdhp "
            "asimddp i8mm bf16 sve\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            "CPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n")
    ident = host_identity(cpuinfo=text)
    assert ident["arch"] == "arm" and ident["part"] == "0xd40" and ident["vendor"] == "Arm"
    assert ident["model_name"] == "Arm Neoverse-V1" and ident["microarchitecture"] == "Neoverse-V1"
    assert ident["isa"] == ["asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve"]
    assert host_identity(cpuinfo="")["model_name"]  # nothing readable: still an identity


# -- comparing two identities built here --------------------------------------------------
def test_compare_hosts_names_flag_and_cache():
    a = amd_epyc()
    assert compare_hosts(a, amd_epyc()) == []
    b = {**a, "isa": [f for f in a["isa"] if f != "avx2"], "caches_kib": {**a["caches_kib"], "L3": 1024}}
    diffs = compare_hosts(a, b, labels=("A", "B"))
    assert len(diffs) == 2
    assert any(d == "avx2 on A, missing on B" for d in diffs)
    assert any(d.startswith("L3 cache:") and "32M (A)" in d and "1M (B)" in d for d in diffs)
    assert compare_hosts(a, {**a, "kernel": "other", "cpu_count": 64, "microcode": "0x2"}) == []
    for ident in (amd_epyc(), intel_xeon()):
        old = compare_hosts({"cpu_model": AMD_NAME}, ident)  # legacy provenance: no crash
        assert old and any("unknown" in d for d in old)
    with pytest.raises(ValueError, match="two identity dicts"):
        compare_hosts(a, None)


@pytest.mark.parametrize("table, host", [("amd", "intel"), ("intel", "amd")])
def test_compare_hosts_amd_and_intel_both_directions(table, host):
    diffs = compare_hosts(HOSTS[table](), HOSTS[host]())
    where = "this host, missing on table host" if host == "intel" else "table host, missing on this host"
    assert f"amx_tile, amx_int8 on {where}" in diffs
    fam = {"amd": "25", "intel": "6"}
    assert f"family: {fam[table]} (table host) vs {fam[host]} (this host)" in diffs
    assert any(d.startswith("vendor:") for d in diffs) and any(d.startswith("L2 cache:") for d in diffs)
    assert compare_hosts(HOSTS[host](), HOSTS[host]()) == []


# -- host_match with an explicit current host ---------------------------------------------
@pytest.mark.parametrize("table, host, same, needle", [
    ("amd", "amd", True, None),
    ("intel", "intel", True, None),
    ("amd", "intel", False, "amx_tile, amx_int8 on this host, missing on table host"),
    ("intel", "amd", False, "amx_tile, amx_int8 on table host, missing on this host"),
])
def test_host_match_between_amd_and_intel(tmp_path, monkeypatch, table, host, same, needle):
    """A table written (host_info) on one host kind, read (host_match) on another or the same."""
    _as_current_host(monkeypatch, HOSTS[table]())
    t = _table(tmp_path, get_profile("cpu-litert").host_info())
    assert json.loads(provenance_path(t).read_text())["host"]["host"] == HOSTS[table]()
    _as_current_host(monkeypatch, HOSTS[host]())
    m = host_match(t)
    assert m.this_host == HOSTS[host]() and m.table_host == HOSTS[table]()
    assert m.same is same
    if same:
        assert m.differences == [] and "this host kind" in m.explain("anb")[0]
    else:
        assert needle in m.differences and "another host" in m.explain("anb")[0]
        assert any("amx_tile" in line for line in m.explain("anb"))


@pytest.mark.parametrize("cpu_model, host, same", [
    (AMD_NAME, "amd", None), (AMD_NAME, "intel", False),
    (INTEL_NAME, "intel", None), (INTEL_NAME, "amd", False),
])
def test_old_provenance_only_cpu_model(tmp_path, cpu_model, host, same):
    """Legacy provenance (cpu_model only): the same model name cannot tell; another one is another host."""
    here = HOSTS[host]()
    t = _table(tmp_path, {"cpu_model": cpu_model, "cpu_count": 2, "machine": "x86_64"})
    m = host_match(t, this_host=here)
    assert m.same is same and len(m.differences) == 1
    assert m.reference_ms_table == pytest.approx(0.45) and m.reference_ms_here is None
    text = "\n".join(m.explain("anb"))
    assert "mnas measure host --space anb" in text
    if same is None:
        assert "predates host identity" in m.differences[0] and "cpu_model" in m.differences[0]
        assert "cannot be told" in text
    else:
        assert m.differences[0] == f"model name: {cpu_model} (table host) vs {here['model_name']} (this host)"
        assert "another host" in text
    other = host_match(_table(tmp_path, {"cpu_model": "Some Other CPU", "machine": "riscv64"},
                              "b_models.csv"), this_host=here)
    assert other.same is False and "riscv64" in other.differences[0]


def test_regression_issue_n_intel_host_amd_tables(tmp_path, monkeypatch):
    """Issue N: on an Intel host with AMX, an AMD-legacy table is another host (False, not None),
    and an AMD table without amx is another host naming the AMX flags this host has."""
    intel = intel_xeon()
    _as_current_host(monkeypatch, intel)
    legacy = host_match(_table(tmp_path, {"cpu_model": AMD_NAME}, "a_models.csv"))
    assert legacy.same is False and legacy.this_host["host_id"] == intel["host_id"]
    assert legacy.differences == [f"model name: {AMD_NAME} (table host) vs {INTEL_NAME} (this host)"]
    amd = host_match(_table(tmp_path, {"host": amd_epyc()}, "b_models.csv"))
    assert amd.same is False
    assert "amx_tile, amx_int8 on this host, missing on table host" in amd.differences
    # why the old test failed there: "this host plus amx_tile" is no other host on an AMX machine
    assert compare_hosts({**intel, "isa": intel["isa"] + ["amx_tile"]}, intel) == []


@pytest.mark.parametrize("host, same", [("amd", None), ("intel", False)])
def test_predictor_table_and_sweep_message(tmp_path, monkeypatch, host, same):
    shipped = Path(__file__).resolve().parents[1] / "surrogate" / "data" / "predictors" / "cpu-litert" / "anb"
    if (shipped / "meta.json").is_file():
        assert predictor_table(shipped, "cpu-litert", "anb").name == "anb_ops.csv"
    from search.sweep import SweepResult, finalists_host_match

    _as_current_host(monkeypatch, HOSTS[host]())
    (tmp_path / "cpu-litert").mkdir()
    _table(tmp_path / "cpu-litert", {"cpu_model": AMD_NAME}, "anb_models.csv")  # legacy, AMD
    monkeypatch.setenv("MNAS_TABLES_DIR", str(tmp_path))
    res = SweepResult(config={"profile": "cpu-litert", "space": "anb"}, trials=1, evaluated_here=1,
                      pareto=[], hypervolume=0.0, hypervolume_reference={}, latency_target_ms=1.0,
                      wall_s=1.0, trials_per_s=1.0, latency={"kind": "measured"},
                      finalists=[{"flag": True}])
    d = finalists_host_match(res, 0.187)
    assert d["same"] is same and d["flagged"] and 1 <= len(d["message"]) <= 3
    assert d["this_host"]["host_id"] == HOSTS[host]()["host_id"]
    assert ("cannot be told" if same is None else "another host") in d["message"][0]
    assert "mnas measure host --space anb" in d["message"][-1]
    assert d["reference_ratio"] == pytest.approx(0.187 / 0.45)
    res.finalists = [{"flag": False}]
    assert finalists_host_match(res)["message"] == []


@pytest.mark.parametrize("writer, host", [("amd", "amd"), ("amd", "intel"), ("intel", "amd"),
                                          ("intel", "intel")])
def test_cli_host_json_and_bad_profile(tmp_path, capsys, monkeypatch, writer, host):
    """`mnas host` with tables written on ``writer`` (identity + legacy cpu_model) run on ``host``."""
    from search.cli import main

    wrote, current = HOSTS[writer](), HOSTS[host]()
    (tmp_path / "cpu-litert").mkdir()
    _as_current_host(monkeypatch, wrote)
    _table(tmp_path / "cpu-litert", get_profile("cpu-litert").host_info(), "anb_models.csv")
    _table(tmp_path / "cpu-litert", {"cpu_model": wrote["model_name"]}, "anb_ops.csv")
    _as_current_host(monkeypatch, current)
    assert main(["host", "--json", "--tables", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["host"] == current
    same = {r["table"]: r["same"] for r in out["tables"]}
    want = {"anb_models.csv": True, "anb_ops.csv": None} if writer == host else \
        {"anb_models.csv": False, "anb_ops.csv": False}
    assert same == want
    assert main(["host", "--tables", str(tmp_path), "--profile", "cpu-litert"]) == 0
    text = capsys.readouterr().out
    assert f"this host: {current['model_name']}" in text and f"[host_id {current['host_id']}]" in text
    if writer == host:
        assert "this host kind" in text and "cannot tell" in text and "ANOTHER HOST" not in text
    else:
        assert text.count("ANOTHER HOST") == 2 and "this host kind" not in text and "amx_tile" in text
    assert main(["host", "--profile", "no-such-profile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-profile" in err[0]


def test_host_module_imports_no_torch():
    import subprocess

    code = "import sys, surrogate.measure.host as h; h.host_identity(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
