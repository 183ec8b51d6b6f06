"""The project's one atomic file writer: readers see the old file or the new one, never a torn one.

Write to a unique temporary file beside the target, fsync it, rename it onto the
target, fsync the folder. Tables' append-only rows are :mod:`surrogate.tables`'; every
other file the project writes (provenance, predictors, results, checkpoints) goes
through here.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "write_atomic", "write_json_atomic"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer; on success fsynced, then renamed onto it.

    The name (``.<name>.<pid>.<random>.tmp<suffix>``; ``suffix`` for writers that read
    the format from it) is unique per process and call, so concurrent writers never
    share one and readers see the old file or the new one, never a torn one. On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as f:  # whatever the writer closed is on disk before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_folder_atomic(path: str | os.PathLike, files: "dict[str, bytes | str] | None" = None,
                        fill=None) -> Path:
    """Write ``files`` (name -> content), and whatever ``fill(folder)`` writes, as folder
    ``path``, replacing any old one whole.

    The files go to a temporary sibling first; the old folder is moved aside before the
    new one is renamed in, so a crash leaves the old folder or the new one.
    """
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a saved folder is an ordinary folder
    try:
        for name, data in (files or {}).items():
            write_atomic(tmp / name, data)
        if fill is not None:
            fill(tmp)
        old = path.with_name(f".{path.name}.old-{os.getpid()}") if path.exists() else None
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def now_iso() -> str:
    """Current UTC time, ISO 8601 to the second (provenance and lock stamps)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
