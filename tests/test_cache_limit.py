"""The export cache's size cap: least recently used models go, recent and foreign files stay."""
from __future__ import annotations

import math
import os
import time

import pytest

from surrogate.measure.cachelimit import MAX_GB_ENV_VAR, cache_max_bytes, prune


def _file(path, size: int, age_s: float, now: float):
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_prune_removes_oldest_first_down_to_the_cap(tmp_path):
    now = time.time()
    old = [_file(tmp_path / f"old{i}.tflite", 1000, 10_000 + 1000 * i, now) for i in range(4)]
    young = _file(tmp_path / "young.onnx", 1000, 10, now)
    other = _file(tmp_path / "notes.txt", 50_000, 1e6, now)
    res = prune(tmp_path, max_bytes=2500, now=now)
    assert res.files == 5 and res.bytes_before == 5000
    # oldest = largest age: old3, then old2, old1 -> 2000 bytes left
    assert [p.exists() for p in old] == [True, False, False, False]
    assert res.removed_files == 3 and res.removed_bytes == 3000
    assert young.exists() and other.exists()


def test_prune_keeps_recently_used_files_even_above_the_cap(tmp_path):
    now = time.time()
    files = [_file(tmp_path / f"m{i}.tflite", 1000, 60 * i, now) for i in range(3)]
    res = prune(tmp_path, max_bytes=0, now=now)
    assert res.removed_files == 0 and all(p.exists() for p in files)
    res = prune(tmp_path, max_bytes=0, now=now, min_age_s=90)
    assert res.removed_files == 1 and not files[2].exists()


def test_prune_of_a_missing_folder_is_empty(tmp_path):
    assert prune(tmp_path / "absent", max_bytes=0).files == 0


def test_cap_from_the_environment(monkeypatch):
    monkeypatch.setenv(MAX_GB_ENV_VAR, "1.5")
    assert cache_max_bytes() == 1.5e9
    monkeypatch.setenv(MAX_GB_ENV_VAR, "0")
    assert math.isinf(cache_max_bytes())
    for bad in ("lots", "-1"):
        monkeypatch.setenv(MAX_GB_ENV_VAR, bad)
        with pytest.raises(ValueError, match=MAX_GB_ENV_VAR):
            cache_max_bytes()


def test_export_cache_evicts_old_models_and_refreshes_hits(tmp_path):
    torch = pytest.importorskip("torch")
    from surrogate.measure.export import ExportCache

    now = time.time()
    stale = _file(tmp_path / ("0" * 64 + ".tflite"), 10_000, 2 * 86400, now)
    cache = ExportCache(tmp_path, max_bytes=1)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    first = cache.export(m, (1, 3, 8, 8), "tflite")
    assert not first.cached and first.path.is_file()
    assert not stale.exists(), "the stale model should be evicted on the first conversion"
    os.utime(first.path, (now - 86400, now - 86400))
    again = cache.export(m, (1, 3, 8, 8), "tflite")
    st = again.path.stat()
    assert again.cached and now - st.st_atime < 600, "a hit refreshes the file's access time"
    assert now - st.st_mtime > 80000, "a hit does not rewrite the file"
