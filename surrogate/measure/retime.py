"""Repeatability of end-to-end timings: re-time a table's networks and compare.

``retime_table`` re-times the first N networks of ``<space>_models.csv`` into another
table of the same folder (resumable), with the same protocol (the base table's
settings, clock and estimator, read from its provenance) and optionally while a busy
loop runs on every core (:class:`BusyLoad`). ``compare_tables`` gives the figures the
targets are stated in: median |relative difference| and the share within ±1/2/5/10%.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .pinning import allowed_cpus, spawn_pinned

__all__ = ["BusyLoad", "table_settings", "retime_table", "compare_tables"]


class BusyLoad:
    """A busy loop on each allowed core (separate processes), for ``with`` blocks."""

    def __init__(self, cores: Sequence[int] | None = None) -> None:
        self.cores = list(cores) if cores is not None else allowed_cpus()
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "BusyLoad":
        for c in self.cores:
            self.procs.append(spawn_pinned([sys.executable, "-c", "while True: pass"], c))
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def table_settings(table_path: str | os.PathLike):
    """The ``MeasureSettings`` a table was timed with (from its provenance)."""
    import dataclasses

    from ..tables import provenance_path, read_provenance
    from .timing import MeasureSettings

    prov = read_provenance(table_path, strict=True)
    if prov is None:
        raise FileNotFoundError(f"{table_path} has no provenance file "
                                f"({provenance_path(table_path).name}) to read its settings from")
    saved = prov.get("settings") or {}
    names = {f.name for f in dataclasses.fields(MeasureSettings)}
    return MeasureSettings(**{k: v for k, v in saved.items() if k in names})


def retime_table(profile: str, base: str | os.PathLike, n: int, name: str, *, busy: bool = False,
                 progress: bool = True, estimator: str | None = None):
    """Re-time the first ``n`` networks of the table ``base`` into ``name`` beside it (resumable).

    ``estimator`` replaces the base table's (e.g. ``min+ref`` to compare the pairing).
    """
    from space.blockstring import parse_arch

    from ..paths import parse_table_name
    from ..tables import Table
    from .jobs import measure_models

    base = Path(base)
    rows = Table.models(base).read()
    if len(rows) < n:
        raise ValueError(f"{base} has {len(rows)} rows; need {n} to re-time")
    _, space, _, _ = parse_table_name(base)
    archs = [(parse_arch(r["arch"]), "repeat-busy" if busy else "repeat") for r in rows[:n]]
    settings = table_settings(base)
    if estimator is not None:
        import dataclasses

        settings = dataclasses.replace(settings, estimator=estimator)
    kw = dict(out_dir=base.parent.parent, settings=settings, progress=progress, table_name=name)
    if busy:
        with BusyLoad():
            return measure_models(profile, space, archs, **kw)
    return measure_models(profile, space, archs, **kw)


def compare_tables(first: Sequence[Mapping], second: Sequence[Mapping], key: str = "median_ms") -> dict:
    """Per-network agreement of two timings of the same networks (joined on ``arch``)."""
    again = {r["arch"]: r for r in second}
    pairs = [(r, again[r["arch"]]) for r in first if r["arch"] in again]
    if not pairs:
        raise ValueError("the two tables share no network")
    a = np.array([float(r[key]) for r, _ in pairs])
    b = np.array([float(q[key]) for _, q in pairs])
    rel = np.abs(b / a - 1)
    return {"n": int(len(a)), "median_abs_rel_diff": float(np.median(rel)),
            "mean_abs_rel_diff": float(np.mean(rel)), "p95_abs_rel_diff": float(np.percentile(rel, 95)),
            **{f"within_{k}pct": float(np.mean(rel <= k / 100)) for k in (1, 2, 5, 10)},
            "median_ratio_second_over_first": float(np.median(b / a))}
