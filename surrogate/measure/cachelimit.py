"""A size cap on the export cache: least recently used models go first.

Every exported model is kept by content hash, so a long measuring campaign fills the
disk (a 224x224 network is 4-20 MB; 2,000 of them are tens of GB). The direct
LiteRT writer rebuilds a model in milliseconds, so an evicted model costs almost
nothing. ``$MNAS_CACHE_MAX_GB`` sets the cap (default :data:`DEFAULT_MAX_GB`;
``0`` or ``inf``: no cap). A hit refreshes a file's time; files used within the
last :data:`MIN_AGE_S` seconds are never evicted, so a job's converted-ahead
models stay until it has timed them.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MAX_GB", "MAX_GB_ENV_VAR", "MIN_AGE_S", "PruneResult", "cache_max_bytes", "prune"]

MAX_GB_ENV_VAR = "MNAS_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
#: files used this recently (seconds) are kept whatever the size
MIN_AGE_S = 3600.0
_SUFFIXES = (".tflite", ".onnx")


def cache_max_bytes() -> float:
    """The cap in bytes from ``$MNAS_CACHE_MAX_GB`` (inf: no cap); a bad value is a ValueError."""
    raw = os.environ.get(MAX_GB_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_GB * 1e9
    try:
        gb = float(raw)
    except ValueError:
        raise ValueError(f"${MAX_GB_ENV_VAR} must be a number of GB (0 or inf: no cap), "
                         f"got {raw!r}") from None
    if gb < 0 or math.isnan(gb):
        raise ValueError(f"${MAX_GB_ENV_VAR} must be >= 0 GB (0 or inf: no cap), got {raw!r}")
    return math.inf if gb == 0 else gb * 1e9


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` found and removed."""

    files: int
    bytes_before: int
    removed_files: int
    removed_bytes: int


def prune(cache_dir: str | os.PathLike, max_bytes: float | None = None, *,
          min_age_s: float = MIN_AGE_S, now: float | None = None) -> PruneResult:
    """Remove the least recently used models of ``cache_dir`` until it holds <= ``max_bytes``.

    Only model files (``.tflite``, ``.onnx``) count and go; files used within
    ``min_age_s`` stay even above the cap. ``max_bytes`` defaults to :func:`cache_max_bytes`.
    """
    cap = cache_max_bytes() if max_bytes is None else float(max_bytes)
    now = time.time() if now is None else now
    entries: list[tuple[float, int, Path]] = []
    try:
        with os.scandir(cache_dir) as it:
            for e in it:
                if not e.name.endswith(_SUFFIXES) or not e.is_file(follow_symlinks=False):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed by another process meanwhile
                    continue
                entries.append((max(st.st_mtime, st.st_atime), st.st_size, Path(e.path)))
    except FileNotFoundError:
        return PruneResult(0, 0, 0, 0)
    total = sum(size for _, size, _ in entries)
    removed = removed_bytes = 0
    if total > cap:
        for used, size, path in sorted(entries):
            if total - removed_bytes <= cap or now - used < min_age_s:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            removed_bytes += size
    return PruneResult(len(entries), total, removed, removed_bytes)
