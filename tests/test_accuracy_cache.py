"""search.accuracy's one result cache: concurrent appends, torn last lines, objective resume."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from search.accuracy import AccuracyObjective, JsonlCache

REPO = Path(__file__).resolve().parents[1]


class _Fake(AccuracyObjective):
    """A cheap objective on the NAS-Bench-Macro space: accuracy from the index vector."""

    name = "fake"
    space_name = "nasbench-macro"

    def __init__(self, cache_path=None):
        self.calls = 0
        super().__init__(cache_path)

    @property
    def fingerprint(self) -> str:
        return "v1"

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        self.calls += len(idx)
        return np.asarray(idx).sum(axis=1) / 16.0


def test_concurrent_appends_from_processes_keep_every_line_whole(tmp_path):
    path = tmp_path / "c.jsonl"
    n_proc, n_each = 4, 60
    code = textwrap.dedent(f"""
        import sys
        from search.accuracy.base import JsonlCache
        cache, w = JsonlCache({str(path)!r}), int(sys.argv[1])
        pad = "x" * 9000  # longer than PIPE_BUF: whole lines need more than pipe semantics
        for i in range({n_each}):
            cache.append({{"arch": f"w{{w}}-{{i}}", "accuracy": 0.5, "pad": pad}},
                         {{"arch": f"w{{w}}-{{i}}b", "accuracy": 0.25}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w)], cwd=REPO)
             for w in range(n_proc)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    cache = JsonlCache(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cache.load()
    assert cache.skipped == 0 and len(got) == 2 * n_proc * n_each
    assert len(path.read_bytes().splitlines()) == 2 * n_proc * n_each


def test_torn_last_line_is_skipped_silently_then_fenced(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = JsonlCache(path)
    cache.append({"arch": "a", "accuracy": 0.1}, {"arch": "b", "accuracy": 0.2})
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # a writer killed inside the last line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(cache.load()) == {"a"} and cache.skipped == 1
    cache.append({"arch": "c", "accuracy": 0.3})
    with pytest.warns(UserWarning, match="unreadable line 2"):
        assert set(cache.load()) == {"a", "c"}
        assert cache.get("c") == {"arch": "c", "accuracy": 0.3}
        assert cache.load(match={"accuracy": 0.1}) == {"a": {"arch": "a", "accuracy": 0.1}}
    with pytest.raises(ValueError, match="'arch' string"):
        cache.append({"accuracy": 0.5})


def test_objective_resumes_from_a_file_with_a_torn_last_line(tmp_path):
    path = tmp_path / "sub" / "obj.jsonl"
    archs = [(0, 1, 2, 0, 1, 2, 0, 1), (1, 1, 1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2, 2, 2)]
    first = _Fake(path)
    want = first.batch(archs)
    assert first.calls == 3 and len(path.read_text().splitlines()) == 3
    path.write_bytes(path.read_bytes()[:-10])  # the last record torn
    second = _Fake(path)
    assert second.cache_skipped == 1 and len(second.cached()) == 2
    np.testing.assert_array_equal(second.batch(archs), want)
    assert second.calls == 1  # only the torn architecture is evaluated again
    with pytest.warns(UserWarning, match="unreadable line 3"):  # the fenced-off torn line
        third = _Fake(path)
    np.testing.assert_array_equal(third.batch(archs), want)
    assert third.calls == 0 and third.n_evaluated == 0


def test_objective_reads_lines_written_before_the_one_cache(tmp_path):
    path = tmp_path / "old.jsonl"
    obj = _Fake()
    key = obj.key((1, 1, 1, 1, 1, 1, 1, 1))
    # the earlier writer's key order (objective, fingerprint, arch, accuracy), unsorted
    path.write_text(json.dumps({"objective": "fake", "fingerprint": "v1", "arch": key,
                                "accuracy": 0.75}) + "\n", encoding="utf-8")
    again = _Fake(path)
    assert again((1, 1, 1, 1, 1, 1, 1, 1)) == 0.75 and again.calls == 0
