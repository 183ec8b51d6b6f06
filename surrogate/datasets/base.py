"""Where public benchmark data lives, and what a loader returns.

The data is read where the user keeps it and never copied into the project: a
path given by the caller, else ``$MNAS_BENCHMARKS_DIR``, else ``../shared/benchmarks``
beside the checkout (:func:`benchmarks_dir`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ENV_BENCHMARKS = "MNAS_BENCHMARKS_DIR"
#: ``../shared/benchmarks`` beside the checkout this package sits in
CHECKOUT_BENCHMARKS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def benchmarks_dir(path: str | os.PathLike | None = None) -> Path:
    """The benchmark data folder: ``path``, ``$MNAS_BENCHMARKS_DIR`` or ``../shared/benchmarks``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(ENV_BENCHMARKS)
    return Path(env).expanduser() if env else CHECKOUT_BENCHMARKS


def benchmark_file(path: str | os.PathLike | None, rel: str, what: str = "benchmark file") -> Path:
    """The file ``rel`` (``subdir/name``) of a benchmark.

    ``path`` may be the file itself, the benchmarks folder (holding ``subdir/``) or
    ``subdir`` itself; None means :func:`benchmarks_dir`. ``FileNotFoundError`` names
    every place looked in and how to point elsewhere.
    """
    p = benchmarks_dir(path)
    if p.is_file():
        return p
    name = Path(rel).name
    tried = [p / rel, p / name]
    for cand in tried:
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{what}: no {rel} under {p} (looked for "
                            f"{', '.join(str(t) for t in tried)}); pass the file or the "
                            f"benchmarks folder, or set ${ENV_BENCHMARKS}")


@dataclass(frozen=True)
class LatencyDataset:
    """A public benchmark read into memory.

    ``frame``: one row per network (a pandas DataFrame; ``<device>_ms`` columns hold
    latencies in ms). ``indices``: the networks as index vectors of ``space`` (as in
    the file); ``canonical``: their canonical forms. ``license``: the data's license
    (SPDX id), also in ``frame.attrs['license']``. ``info``: what was dropped and why.
    """

    name: str
    space: str
    frame: Any
    indices: np.ndarray
    canonical: np.ndarray
    devices: tuple[str, ...]
    license: str
    path: Path
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def LICENSE(self) -> str:  # noqa: N802 - the constant-style name, beside ``license``
        """Alias of :attr:`license`."""
        return self.license

    def latency_ms(self, device: str) -> np.ndarray:
        """Latencies (ms) of ``device`` in row order; KeyError names the devices there are."""
        if device not in self.devices:
            raise KeyError(f"{self.name}: no device {device!r}; expected one of "
                           f"{', '.join(self.devices)}")
        return self.frame[f"{device}_ms"].to_numpy(dtype=np.float64)

    def __len__(self) -> int:
        return len(self.frame)


def tag_frame(df, license: str, source: str, path: Path):
    """Record license, source and path in ``df.attrs`` (kept by most pandas operations)."""
    df.attrs.update({"license": license, "source": source, "path": str(path)})
    return df
