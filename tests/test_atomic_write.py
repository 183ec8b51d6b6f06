"""The one atomic writer (surrogate.tables.atomic_path / write_atomic / write_json_atomic)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surrogate.tables import atomic_path, write_atomic, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def test_write_atomic_text_bytes_and_json(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    write_atomic(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    write_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "d.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "d.json").read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    assert sorted(x.name for x in tmp_path.rglob("*")) == ["d.json", "f.txt", "sub"]


def test_no_temporary_file_is_left_after_an_exception(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(p, suffix=".csv") as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".tmp.csv") and tmp != p
            tmp.write_text("half a fi")
            raise RuntimeError("writer died")
    assert p.read_text() == "old\n" and [x.name for x in tmp_path.iterdir()] == ["f.csv"]
    with pytest.raises(TypeError):
        write_atomic(p, 12345)  # not bytes or str: fails before the rename
    assert p.read_text() == "old\n" and [x.name for x in tmp_path.iterdir()] == ["f.csv"]


_WRITER = """
import sys
sys.path.insert(0, {repo!r})
from surrogate.tables import write_atomic
tag, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    write_atomic(path, (tag * 200_000) + f"|{{tag}}{{i}}|end")
"""


def test_two_processes_writing_never_leave_a_torn_file(tmp_path):
    p = tmp_path / "shared.txt"
    code = _WRITER.format(repo=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, tag, str(p), "150"]) for tag in "AB"]
    seen, deadline = set(), time.monotonic() + 120
    while any(q.poll() is None for q in procs) and time.monotonic() < deadline:
        try:
            text = p.read_text()
        except FileNotFoundError:
            continue
        body, _, tail = text.partition("|")
        assert len(body) == 200_000 and len(set(body)) == 1 and tail.endswith("|end"), text[-40:]
        assert tail.startswith(body[0])  # one writer's whole file, never a mix
        seen.add(body[0])
    assert [q.wait(timeout=60) for q in procs] == [0, 0]
    assert p.read_text().endswith("149|end")
    assert [x.name for x in tmp_path.iterdir()] == ["shared.txt"]  # no temporary files left
    assert seen  # the reader saw complete files while both wrote
