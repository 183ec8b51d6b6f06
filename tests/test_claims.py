"""Several devices measuring one table: claims, parts, SIGKILL, merge (issue K item 4)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surrogate.measure.claims import (ChunkClaims, ClaimError, claims_status, parse_device,
                                      part_path)
from surrogate.measure.merge import merge_parts
from surrogate.tables import Table, provenance_path

REPO = Path(__file__).resolve().parents[1]


def test_parse_device_forms_and_errors():
    assert parse_device("core:1").pin_core == 1 and parse_device("core:1").name == "core1"
    d = parse_device("adb:192.168.1.5:5555")
    assert d.serial == "192.168.1.5:5555" and d.name == "adb-192-168-1-5-5555"
    assert parse_device("rack-3").name == "rack-3" and parse_device("rack-3").pin_core is None
    for bad in ("core:x", "core:", "adb:", "a b", "x:y", "core", "../up"):
        with pytest.raises(ClaimError, match="core:N, adb:SERIAL"):
            parse_device(bad)


def test_part_path_keeps_a_table_name():
    assert part_path("/t/cpu/anb_ops.csv", "core1") == Path("/t/cpu/anb_ops.parts/anb_ops_core1.csv")
    assert (part_path("/t/cpu/mnasnet_models_repeat.csv", "adb-x").name
            == "mnasnet_models_repeat-adb-x.csv")


def test_claims_are_disjoint_and_a_released_chunk_is_taken_again(tmp_path):
    keys = [f"k{i}" for i in range(10)]
    a, b = ChunkClaims(tmp_path, "a"), ChunkClaims(tmp_path, "b")
    assert [len(c) for c in a.plan(keys, 4)] == [4, 4, 2]
    b.plan(keys, 4)
    ta, tb = a.take(set), b.take(set)
    ca = next(ta)  # a holds chunk 0 (its lock is a separate open file: flock conflicts)
    cb = next(tb)
    assert (ca.index, cb.index) == (0, 1)
    cb.release()  # b gives chunk 1 back without finishing it (as a killed device does)
    cb2 = next(tb)
    assert cb2.index == 2
    ca.finish(4)
    ca2 = next(ta)
    assert ca2.index == 1 and ca2.keys == keys[4:8]
    st = claims_status(tmp_path)
    assert st["done"] == 1 and sorted(st["active"]) == [1, 2] and st["free"] == 0
    assert st["done_by_device"] == {"a": 1}
    ca2.finish(4)
    cb2.finish(2)
    assert next(ta, None) is None and next(tb, None) is None
    assert claims_status(tmp_path)["done"] == 3


def test_rows_already_written_are_not_claimed_again(tmp_path):
    keys = [f"k{i}" for i in range(6)]
    c = ChunkClaims(tmp_path, "a")
    c.plan(keys, 3)
    got = [(cl.index, cl.keys) for cl in _finishing(c.take(lambda: {"k0", "k1", "k2", "k4"}))]
    # chunk 0 is wholly on disk (a device died after writing, before the marker): marked done
    assert got == [(1, ["k3", "k5"])]
    assert claims_status(tmp_path)["done"] == 2


def _finishing(it):
    for cl in it:
        yield cl
        cl.finish(len(cl.keys))


def test_a_plan_of_another_job_is_refused(tmp_path):
    ChunkClaims(tmp_path, "a").plan(["x", "y"], 1, job={"profile": "cpu-litert", "estimator": "min+ref"})
    with pytest.raises(ClaimError, match="plans another job"):
        ChunkClaims(tmp_path, "b").plan(["x", "y", "z"], 1, job={"profile": "cpu-litert",
                                                                 "estimator": "min+ref"})
    with pytest.raises(ClaimError, match="one profile, clock and estimator"):
        ChunkClaims(tmp_path, "b").plan(["x", "y"], 1, job={"profile": "cpu-litert",
                                                            "estimator": "median"})


def _mnas(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("mnas")), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, **kw)


def _job(out: Path, device: str, n: int) -> list[str]:
    return ["measure", "ops", "--profile", "cpu-litert", "--space", "anb", "--limit", str(n),
            "--chunk", "3", "--rounds", "1", "--runs", "2", "--warmup", "1", "--out", str(out),
            "--device", device, "--no-progress"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores as stand-in devices")
def test_two_devices_one_killed_nothing_lost_or_duplicated(tmp_path):
    pytest.importorskip("ai_edge_litert")
    cores = sorted(os.sched_getaffinity(0))[:2]
    n = 30
    table = tmp_path / "cpu-litert" / "anb_ops.csv"
    first = _mnas(*_job(tmp_path, f"core:{cores[0]}", n))
    part0 = part_path(table, f"core{cores[0]}")
    until = time.time() + 120
    while time.time() < until and first.poll() is None:
        if part0.is_file() and len(part0.read_text().splitlines()) >= 4:  # header + a chunk
            break
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[1][-2000:]
    first.send_signal(signal.SIGKILL)  # mid-job, maybe mid-chunk with a claim held
    first.wait()
    # the killed device restarts beside a second one
    procs = [_mnas(*_job(tmp_path, f"core:{c}", n)) for c in cores]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    res = merge_parts(table)
    rows = Table.ops(table).read()  # raises on a duplicate key
    from space.spaces import get_space

    want = {lc.key() for lc in get_space("anb").operator_configs()[:n]}
    assert {r["op_key"] for r in rows} == want and len(rows) == n
    assert res["duplicates"] == 0 and res["merged"] == n
    parts = res["parts"]
    assert sum(d["rows"] for d in parts.values()) == n  # disjoint: no row timed twice
    prov = json.loads(provenance_path(table).read_text())
    sessions = [(s["device"], s["status"]) for s in prov["sessions"]]
    assert (f"core{cores[0]}", "killed") in sessions  # the killed session is on record
    # each restarted device finished, unless it started after every row was held (a loaded
    # host: it then has nothing to time and records no session); every row is counted once
    finished = [d for d, st in sessions if st == "finished"]
    assert 1 <= len(finished) <= 2 and set(finished) <= {f"core{c}" for c in cores}, sessions
    assert sum(int(s.get("measured") or 0) for s in prov["sessions"]) == n, prov["sessions"]
    assert prov["claims"]["done"] == prov["claims"]["chunks"] == 10
    assert prov["rows"] == n and prov["estimator"] == "min+ref"
    # one base: every part's rows are on the table's, exactly
    for name, d in parts.items():
        prow = {r["op_key"]: r for r in Table.ops(d["path"]).read()}
        for r in rows:
            if r["op_key"] in prow:
                assert r["median_ms"] == pytest.approx(prow[r["op_key"]]["median_ms"] * d["scaled_by"],
                                                       rel=1e-9)
    again = merge_parts(table)  # merging again adds nothing
    assert again["merged"] == 0 and again["rows"] == n


def test_cli_device_errors_are_one_line(tmp_path):
    beyond = max(os.sched_getaffinity(0)) + 1  # a core this process may not use, on any host
    for dev, msg in ((f"core:{beyond}", "not allowed here"), ("a b", "core:N, adb:SERIAL")):
        p = _mnas(*_job(tmp_path, dev, 6))
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    p = _mnas("table", "merge", str(tmp_path / "cpu-litert" / "anb_ops.csv"))
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "no part tables" in err and len(err.strip().splitlines()) == 1
