"""Never damage a table (issue N item 2): convert, one writer per table, foreign files refused
before any write, a complete last row kept, a killed session's rows counted, bad inputs refused."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surrogate.tables import Table, file_sha256, provenance_path

REPO = Path(__file__).resolve().parents[1]
TIMING = ["--rounds", "1", "--runs", "2", "--warmup", "1", "--no-progress"]

pytest.importorskip("ai_edge_litert")


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "MNAS_CACHE_DIR": str(tmp_path / "cache"), "MNAS_HOME": str(tmp_path / "home"),
            "MNAS_TABLES_DIR": str(tmp_path / "tables")}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for k, v in _env(tmp_path).items():
        if k.startswith("MNAS_"):
            monkeypatch.setenv(k, v)


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _mnas(capsys, *args: str) -> _Run:
    """The CLI in this process (``search.cli.main``): exit code, stdout, stderr."""
    from search.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return _Run(rc, out, err)


def _measure(capsys, out: Path, *extra: str) -> _Run:
    return _mnas(capsys, "measure", "ops", "--profile", "cpu-litert", "--space", "anb",
                 "--out", str(out), *TIMING, *extra)


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("INFO:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _tree(root: Path) -> dict:
    """Every file under ``root`` -> sha256 of its bytes (folders as None)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def good(tmp_path, capsys) -> Path:
    """A 3-row operator table measured for real (with its provenance)."""
    r = _measure(capsys, tmp_path / "good", "--limit", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp_path / "good" / "cpu-litert" / "anb_ops.csv"


# -- 1: table convert -----------------------------------------------------------------
def test_convert_refuses_its_own_source_under_any_path(tmp_path, capsys, good):
    x = tmp_path / "X"
    x.mkdir()
    src = x / "anb_ops.csv"
    src.write_bytes(good.read_bytes())
    os.link(src, x / "hard_ops.csv")
    before = _tree(x)
    for dst in (src, x / ".." / "X" / "anb_ops.csv", x / "hard_ops.csv"):
        line = _one_line_error(_mnas(capsys, "table", "convert", str(src), str(dst)))
        assert "is the source" in line
    # an op table to a file named like an op table: a LUT would land under a table's name
    line = _one_line_error(_mnas(capsys, "table", "convert", str(src), str(x / "other_ops.csv")))
    assert "named like a latency table" in line
    assert _tree(x) == before


def test_convert_chooses_the_direction_from_the_content(tmp_path, capsys, good):
    src = tmp_path / "table.yaml"  # an operator table under a LUT-like name: exported
    src.write_bytes(good.read_bytes())
    r = _mnas(capsys, "table", "convert", str(src), str(tmp_path / "out.yaml"))
    assert r.returncode == 0, r.stderr
    lut = (tmp_path / "out.yaml").read_text()
    assert "-input:" in lut and "count:" in lut
    (tmp_path / "lut.csv").write_text(lut)  # a LUT under a .csv name: imported
    r = _mnas(capsys, "table", "convert", str(tmp_path / "lut.csv"), str(tmp_path / "anb_ops.csv"))
    assert r.returncode == 0, r.stderr
    assert Table.ops(tmp_path / "anb_ops.csv").read()


@pytest.mark.parametrize("content, name", [(b"", "anb_ops.csv"), (b"  \n\n\t\n", "lut.yaml")])
def test_convert_refuses_an_empty_source_and_creates_nothing(tmp_path, capsys, content, name):
    src = tmp_path / "in" / name
    src.parent.mkdir()
    src.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    for dst in (out / "x.yaml", out / "anb_ops.csv"):
        line = _one_line_error(_mnas(capsys, "table", "convert", str(src), str(dst)))
        assert "empty" in line
    assert list(out.iterdir()) == [] and src.read_bytes() == content


# -- 2: one writer per table ----------------------------------------------------------
def test_a_second_writer_is_refused_at_once_and_merge_waits_its_turn(tmp_path, capsys):
    out = tmp_path / "C"
    table = out / "cpu-litert" / "anb_ops.csv"
    part = _measure(capsys, out, "--limit", "3", "--device", "rack-1")  # a part to merge later
    assert part.returncode == 0, part.stderr[-2000:]
    args = [sys.executable, "-m", "search.cli", "measure", "ops", "--profile", "cpu-litert",
            "--space", "anb", "--out", str(out), "--limit", "12", "--chunk", "3", *TIMING]
    first = subprocess.Popen(args, env=_env(tmp_path), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lock = table.with_name(table.name + ".lock")
        until = time.time() + 60
        while time.time() < until and first.poll() is None:
            if lock.is_file() and b'"pid"' in lock.read_bytes():
                break
            time.sleep(0.02)
        assert first.poll() is None, first.communicate()[1][-2000:]
        first.send_signal(signal.SIGSTOP)  # it holds the lock, stopped wherever it is
        before = table.read_bytes() if table.exists() else b""
        second = _measure(capsys, out, "--limit", "12", "--chunk", "3")
        line = _one_line_error(second)
        assert f"pid {first.pid}" in line and "another process" in line and "since" in line
        assert second.stdout == ""
        merge = _mnas(capsys, "table", "merge", str(table))
        assert f"pid {first.pid}" in _one_line_error(merge)
        assert (table.read_bytes() if table.exists() else b"") == before
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-2000:]
    rows = Table.ops(table).read()  # raises on a duplicate key
    assert len(rows) == len({r["op_key"] for r in rows}) == 12
    assert not lock.exists()  # removed when its holder finished
    prov = json.loads(provenance_path(table).read_text())
    assert [s["status"] for s in prov["sessions"]] == ["finished"] and prov["rows"] == 12
    assert _mnas(capsys, "table", "validate", str(table)).returncode == 0
    assert _mnas(capsys, "table", "merge", str(table)).returncode == 0  # its turn now


# -- 3: a file that is not a table is refused before anything is written -----------------
def test_binary_garbage_is_refused_untouched_by_measure_validate_and_merge(tmp_path, capsys):
    out = tmp_path / "D"
    table = out / "cpu-litert" / "anb_ops.csv"
    table.parent.mkdir(parents=True)
    junk = os.urandom(4000).replace(b"\n", b"\xff") + b"\xfe\xff" * 8
    table.write_bytes(junk)
    before = _tree(out)
    line = _one_line_error(_measure(capsys, out, "--limit", "3"))
    assert "not a latency table" in line and "rerun" not in line
    line = _one_line_error(_mnas(capsys, "table", "validate", str(table)))
    assert "torn" not in line and "rerun" not in line and "repair" not in line
    assert _tree(out) == before  # same bytes, nothing created (no lock, no provenance)
    # a garbage part: merge refuses it and leaves it whole
    parts = table.with_name("anb_ops.parts")
    parts.mkdir()
    (parts / "anb_ops_rack-1.csv").write_bytes(junk)
    table.unlink()
    before = _tree(out)
    line = _one_line_error(_mnas(capsys, "table", "merge", str(table)))
    assert "anb_ops_rack-1.csv" in line and "rerun" not in line
    assert _tree(out) == before


def test_text_with_another_header_is_refused_untouched(tmp_path, capsys):
    out = tmp_path / "W"
    table = out / "cpu-litert" / "anb_ops.csv"
    table.parent.mkdir(parents=True)
    table.write_bytes(b"a,b,c\n1,2,3\n4,5")  # no newline at the end, fewer fields: still not ours
    before = _tree(out)
    line = _one_line_error(_measure(capsys, out, "--limit", "3"))
    assert "not a 'op_key' latency table" in line
    assert _tree(out) == before


def test_only_a_torn_row_is_cut_and_a_complete_last_row_is_kept(tmp_path, capsys, good):
    out = tmp_path / "E"
    table = out / "cpu-litert" / "anb_ops.csv"
    table.parent.mkdir(parents=True)
    data = good.read_bytes()
    table.write_bytes(data[:-1])  # the last row lacks its newline, nothing else
    r = _measure(capsys, out, "--limit", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = Table.ops(table).read()
    assert len(rows) == 4 and [x["op_key"] for x in rows[:3]] == [x["op_key"] for x in Table.ops(good).read()]
    assert table.read_bytes().startswith(data)
    # a torn row (no newline, fewer fields) is still dropped and re-timed
    lines = table.read_bytes().splitlines(keepends=True)
    table.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    r = _measure(capsys, out, "--limit", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(Table.ops(table).read()) == 4


# -- 5: a killed session's rows are counted -------------------------------------------
def test_rows_appended_after_the_last_checkpoint_count_for_the_killed_session(tmp_path, capsys):
    out = tmp_path / "K"
    table = out / "cpu-litert" / "anb_ops.csv"
    r = _measure(capsys, out, "--limit", "2", "--chunk", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    checkpoint = json.loads(provenance_path(table).read_text())
    r = _measure(capsys, out, "--limit", "3")  # one more row on disk ...
    assert r.returncode == 0, r.stderr[-2000:]
    # ... which a session SIGKILLed after appending it, before its next checkpoint, left uncounted
    checkpoint["sessions"][-1]["status"] = "running"
    provenance_path(table).write_text(json.dumps(checkpoint))
    v = _mnas(capsys, "table", "validate", str(table))
    assert v.returncode == 0 and "did not finish" in v.stdout, v.stderr
    r = _measure(capsys, out, "--limit", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    prov = json.loads(provenance_path(table).read_text())
    assert [s["status"] for s in prov["sessions"]] == ["killed", "finished"]
    assert sum(s["measured"] for s in prov["sessions"]) == prov["rows"] == 5
    assert prov["table_sha256"] == file_sha256(table)


# -- 6: bad inputs: one line, exit 2, nothing created -----------------------------------
def test_bad_inputs_are_one_line_and_create_nothing(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    before = _tree(tmp_path)
    line = _one_line_error(_measure(capsys, tmp_path / "A", "--limit", "3", "--device", "adb:NOPE"))
    assert "adb:NOPE" in line
    line = _one_line_error(_mnas(capsys, "host", "--tables", str(tmp_path / "MISSING")))
    assert "MISSING" in line
    for verb in (["ops", "--limit", "3"], ["models", "--random", "2"]):
        line = _one_line_error(_mnas(capsys, "measure", *verb, "--profile", "cpu-litert", "--space",
                                     "anb", "--out", str(tmp_path / "afile" / "x"), *TIMING))
        assert "afile" in line
    inner = tmp_path / "a" / "b"
    for name in ("../../e.csv", "/tmp/e_models.csv", "x/y_models.csv", ".."):
        line = _one_line_error(_mnas(capsys, "measure", "models", "--profile", "cpu-litert",
                                     "--space", "anb", "--random", "2", "--out", str(inner),
                                     "--table", name, *TIMING))
        assert "plain file name" in line
    assert _tree(tmp_path) == before and not Path("/tmp/e_models.csv").exists()
