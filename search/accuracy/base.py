"""The accuracy-objective interface, its one result cache, and benchmark file lookup.

:class:`AccuracyObjective` caches results in memory by canonical architecture
string and, optionally, in a :class:`JsonlCache` shared across runs and processes.
:class:`JsonlCache` is the project's one JSON-lines result cache: every objective
(the proxy-training one included) reads and appends through it.
"""
from __future__ import annotations

import json
import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from space import Arch, format_arch, get_space, resolve_arch
from space.spaces import SearchSpace
from surrogate.datasets.base import ENV_BENCHMARKS, benchmark_file

try:  # POSIX advisory locks; elsewhere O_APPEND alone keeps single writes whole
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


ArchLike = Arch | str | Sequence[int] | np.ndarray


# -- the one result cache ---------------------------------------------------------------------
class JsonlCache:
    """An append-only JSON-lines file of records, one object per line with an ``arch`` string.

    Appends are one ``write`` on an ``O_APPEND`` descriptor (under an exclusive
    ``flock`` where available), then ``fsync``, so concurrent writers -- threads or
    processes -- never interleave inside a line. A torn last line (a killed writer)
    is skipped without a word when reading and fenced off by the next append; a
    complete line that does not parse is skipped with a ``UserWarning``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        #: lines ignored by the last read (unreadable, torn, or not a record)
        self.skipped = 0

    def records(self) -> list[dict]:
        """Every readable record in file order (dicts with a string ``arch``)."""
        self.skipped = 0
        if not self.path.exists():
            return []
        if not self.path.is_file():
            raise ValueError(f"cache file {self.path} is not a file")
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        out: list[dict] = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                self.skipped += 1
                if i < len(lines) - 1:  # the last piece has no newline: a torn write
                    warnings.warn(f"{self.path}: skipping unreadable line {i + 1}", stacklevel=3)
                continue
            if isinstance(rec, dict) and isinstance(rec.get("arch"), str):
                out.append(rec)
            else:
                self.skipped += 1
        return out

    def load(self, match: Mapping[str, Any] | None = None) -> dict[str, dict]:
        """Records by architecture string (later lines win), only those agreeing with ``match``."""
        items = match.items() if match else ()
        return {r["arch"]: r for r in self.records() if all(r.get(k) == v for k, v in items)}

    def get(self, arch: str, match: Mapping[str, Any] | None = None) -> dict | None:
        """The latest record of ``arch`` (a canonical string), or ``None``."""
        return self.load(match).get(arch)

    def append(self, *records: dict) -> None:
        """Append ``records`` as lines in one ``write`` call, then ``fsync``."""
        if not records:
            return
        if any(not isinstance(r, dict) or not isinstance(r.get("arch"), str) for r in records):
            raise ValueError("a cache record needs an 'arch' string")
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":  # a torn last line: fence it off
                    data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock


# -- benchmark files ---------------------------------------------------------------------------
def resolve_benchmark_file(path: str | os.PathLike | None, subdir: str, filename: str,
                           what: str) -> Path:
    """The benchmark file ``filename`` from a file path, a folder, or ``$MNAS_BENCHMARKS_DIR``.

    A folder may be the benchmarks root (holding ``subdir/``) or ``subdir`` itself; the
    lookup is :func:`surrogate.datasets.base.benchmark_file`. Unlike it, no path and no
    ``$MNAS_BENCHMARKS_DIR`` is a ``ValueError`` (an objective never guesses
    ``../shared``), and a path that does not exist is a ``FileNotFoundError`` saying so.
    """
    if path is None or str(path) == "":
        env = os.environ.get(ENV_BENCHMARKS)
        if not env:
            raise ValueError(f"{what}: give the path to {filename} (or the benchmarks folder), "
                             f"e.g. --data DIR, or set ${ENV_BENCHMARKS}")
        path = env
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what}: {p} does not exist")
    return benchmark_file(p, f"{subdir}/{filename}", what)


# -- the interface ------------------------------------------------------------------------------
class AccuracyObjective(ABC):
    """An accuracy objective: ``obj(arch) -> float`` in [0, 1], cached by canonical arch.

    Subclasses set ``name`` and ``space_name`` and implement :meth:`_evaluate`
    (a batch of canonical index vectors -> accuracies) and :attr:`fingerprint`
    (identifies the model or data, so file caches of other versions are ignored).
    With ``cache_path``, results are also kept in a :class:`JsonlCache` of lines
    ``{"objective", "fingerprint", "arch", "accuracy"}``, shared across runs.
    """

    name: str = ""
    space_name: str = ""

    def __init__(self, cache_path: str | os.PathLike | None = None) -> None:
        self.space: SearchSpace = get_space(self.space_name)
        self._cache: dict[str, float] = {}
        self._keys: dict[tuple[int, ...], str] = {}  # canonical indices -> canonical string
        #: number of architectures actually evaluated (cache misses)
        self.n_evaluated = 0
        #: cache-file lines ignored (other objective/fingerprint, or unreadable)
        self.cache_skipped = 0
        self.cache_path = Path(cache_path).expanduser() if cache_path else None
        self._file = JsonlCache(self.cache_path) if self.cache_path is not None else None
        if self._file is not None:
            self._load_cache()

    # -- to be provided -----------------------------------------------------------------
    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """A short identifier of the model or data behind the objective."""

    @abstractmethod
    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        """Accuracies (fractions) of an ``(n, d)`` array of canonical index vectors."""

    # -- canonical forms -----------------------------------------------------------------
    def indices(self, arch: ArchLike) -> tuple[int, ...]:
        """Canonical index vector of ``arch`` (``ValueError`` if it is not in the space)."""
        if isinstance(arch, str):
            arch = resolve_arch(arch)
        if isinstance(arch, Arch):
            return self.space.from_arch(arch)
        if isinstance(arch, (list, tuple, np.ndarray)):
            arr = np.asarray(arch)
            if arr.ndim != 1:
                raise ValueError(f"{self.name}: an index vector must be 1-D, got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{self.name}: index vector must hold ints, got {arr.dtype}")
            return self.space.canonical(arr.tolist())
        raise ValueError(f"{self.name}: expected an Arch, an architecture string or an index "
                         f"vector of space {self.space.name!r}, got {type(arch).__name__}")

    def key(self, arch: ArchLike) -> str:
        """The canonical architecture string used as cache key."""
        return self._key_of(self.indices(arch))

    def _key_of(self, idx: tuple[int, ...]) -> str:
        key = self._keys.get(idx)
        if key is None:
            key = self._keys[idx] = format_arch(self.space.to_arch(idx))
        return key

    # -- evaluation --------------------------------------------------------------------
    def __call__(self, arch: ArchLike) -> float:
        """Accuracy of one architecture, as a fraction in [0, 1]."""
        return float(self.batch([arch])[0])

    def batch(self, archs: Iterable[ArchLike]) -> np.ndarray:
        """Accuracies of many architectures (an iterable or an ``(n, d)`` index array)."""
        if isinstance(archs, np.ndarray) and archs.ndim == 2:
            archs = list(archs)
        idx_list = [self.indices(a) for a in archs]
        keys = [self._key_of(i) for i in idx_list]
        missing: dict[str, tuple[int, ...]] = {}
        for k, i in zip(keys, idx_list):
            if k not in self._cache and k not in missing:
                missing[k] = i
        if missing:
            arr = np.array(list(missing.values()), dtype=np.int64).reshape(len(missing), -1)
            vals = np.asarray(self._evaluate(arr), dtype=np.float64).reshape(-1)
            if vals.shape != (len(missing),):
                raise RuntimeError(f"{self.name}: _evaluate returned {vals.shape} values "
                                   f"for {len(missing)} architectures")
            self.n_evaluated += len(missing)
            new = dict(zip(missing, (float(v) for v in vals)))
            self._cache.update(new)
            if self._file is not None:
                fp = self.fingerprint
                self._file.append(*({"objective": self.name, "fingerprint": fp, "arch": k,
                                     "accuracy": v} for k, v in new.items()))
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def cached(self) -> dict[str, float]:
        """A copy of the in-memory cache (canonical string -> accuracy)."""
        return dict(self._cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, space={self.space.name!r})"

    def _load_cache(self) -> None:
        assert self._file is not None
        want = {"objective": self.name, "fingerprint": self.fingerprint}
        records = self._file.records()
        skipped = self._file.skipped
        for rec in records:
            try:
                if any(rec.get(k) != v for k, v in want.items()):
                    raise ValueError("another objective or fingerprint")
                acc = float(rec["accuracy"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            if 0.0 <= acc <= 1.0:
                self._cache[rec["arch"]] = acc
            else:
                skipped += 1
        self.cache_skipped = skipped


__all__ = ["ENV_BENCHMARKS", "AccuracyObjective", "ArchLike", "JsonlCache",
           "resolve_benchmark_file"]
