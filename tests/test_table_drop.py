"""``mnas table drop``: rows of a window of known interference leave the table on the record."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from surrogate.tables import Table, provenance_path, validate_table
from surrogate.tabledrop import drop_measured_between, parse_time

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "data" / "latency_tables" / "cpu-litert" / "fbnet_ops.csv"


@pytest.fixture()
def table(tmp_path):
    dst = tmp_path / "cpu-litert" / "fbnet_ops.csv"
    dst.parent.mkdir()
    shutil.copy(SRC, dst)
    shutil.copy(provenance_path(SRC), provenance_path(dst))
    return dst


def _times(path):
    return sorted({r["measured_at"] for r in Table.ops(path).read()})


def test_drop_a_window_keeps_the_rest_and_records_it(table):
    rows = Table.ops(table).read()
    first, last = _times(table)[0], _times(table)[-1]
    assert first != last
    res = drop_measured_between(table, parse_time(last, "t"), reason="a fleet ran beside it")
    left = Table.ops(table).read()
    assert res["dropped"] == sum(r["measured_at"] == last for r in rows) > 0
    assert len(left) == res["rows"] == len(rows) - res["dropped"]
    assert all(r["measured_at"] == first for r in left)
    # the kept rows are byte-identical lines, in order
    before = SRC.read_text().splitlines()
    assert table.read_text().splitlines() == [before[0]] + [
        ln for ln, r in zip(before[1:], rows) if r["measured_at"] == first]
    prov = json.loads(provenance_path(table).read_text())
    assert prov["rows"] == len(left) and prov["dropped"][-1]["rows"] == res["dropped"]
    assert prov["dropped"][-1]["reason"] == "a fleet ran beside it"
    info = validate_table(table)  # sha and row count agree again
    assert info["rows"] == len(left)


def _mnas(*args):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra, msg", [
    (["--since", "2030-01-01T00:00:00Z"], "no row was measured"),
    (["--since", "yesterday"], "--since: expected an ISO 8601 time"),
    (["--since", "2026-12-01T16:00:00Z", "--until", "2026-11-01T00:00:00Z"], "is before --since"),
    (["--since", "2026-12-01T16:00:00Z", "--reason", " "], "--reason"),
])
def test_refused_drops_change_nothing(table, extra, msg):
    before = table.read_bytes(), provenance_path(table).read_bytes()
    args = ["table", "drop", str(table), *extra]
    if "--reason" not in extra:
        args += ["--reason", "test"]
    p = _mnas(*args)
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert (table.read_bytes(), provenance_path(table).read_bytes()) == before
    assert not list(table.parent.glob("*.lock"))


def test_cli_drop_then_the_same_window_is_empty(table):
    t = _times(table)[-1]
    p = _mnas("table", "drop", str(table), "--since", t, "--reason", "busy core", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["dropped"] > 0
    p = _mnas("table", "drop", str(table), "--since", t, "--reason", "busy core")
    assert p.returncode == 2 and "no row was measured" in p.stderr
