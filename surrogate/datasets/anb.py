"""Accel-NASBench (Ahmad et al., 2024) throughput as ms per image. License: Apache-2.0.

``accel_nasbench/anb_results.csv`` gives throughput (images/s) on A100, RTX 3090,
TPUv2 and TPUv3 with its run-to-run std. :func:`load_anb` converts it to ms per
image (``1000 / throughput``) and a relative std (``std / throughput``). Rows lacking
any kept throughput are dropped, and a repeated architecture (same canonical network)
keeps its first row, so no network can sit on both sides of a split.
:func:`anb_rows` is the one reading of the file (the accuracy objective's
``search.accuracy.load_anb_csv`` keeps every row: ``unique=False``).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from space import get_space

from ..frames import require_pandas
from .base import LatencyDataset, benchmark_file, tag_frame

LICENSE = "Apache-2.0"
SOURCE = "Accel-NASBench (Ahmad et al., 2024), MnasNet-like space on ImageNet"
CSV = "accel_nasbench/anb_results.csv"
ACCELERATORS = ("a100", "3090", "tpuv2", "tpuv3")


class AnbRows(NamedTuple):
    """The CSV read: column names, kept rows (str values), index vectors (as in the file
    and canonical), counts."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    indices: np.ndarray
    canonical: np.ndarray
    info: dict


def anb_rows(path: str | os.PathLike | None = None, *, need: Sequence[str] = (),
             accelerators: Sequence[str] = (), unique: bool = True) -> AnbRows:
    """The one reading of ``anb_results.csv`` (no pandas; ``search.accuracy`` uses it too).

    ``need``: columns required besides the space's decisions. Rows lacking a
    throughput of ``accelerators`` are dropped; with ``unique`` a repeated network
    (same canonical form) keeps its first row, else every row is kept as in the file.
    """
    p = benchmark_file(path, CSV, "Accel-NASBench results")
    sp = get_space("anb")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, restval="")
        columns = list(reader.fieldnames or [])
        missing = [c for c in (*need, *(d.name for d in sp.decisions)) if c not in columns]
        if missing:
            raise ValueError(f"{p}: not the Accel-NASBench results CSV (missing {missing[0]})")
        records = list(reader)
    keep, idx, can, seen = [], [], [], set()
    n_missing = n_dup = 0
    for i, r in enumerate(records):
        if not all(r[f"throughput_{a}_img_s"].strip() for a in accelerators):
            n_missing += 1
            continue
        try:
            raw = sp.from_row(r)
            key = sp.canonical(raw)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{p}: row {i + 2}: {exc}") from None
        if unique and key in seen:
            n_dup += 1
            continue
        seen.add(key)
        keep.append(r)
        idx.append(raw)
        can.append(key)
    info = {"rows_in_file": len(records), "rows_missing_a_throughput": n_missing,
            "repeated_architectures_dropped": n_dup, "rows_used": len(keep)}
    shape = (len(keep), sp.n_decisions)
    return AnbRows(p, columns, keep, np.array(idx, dtype=np.int64).reshape(shape),
                   np.array(can, dtype=np.int64).reshape(shape), info)


def load_anb(path: str | os.PathLike | None = None, *,
             accelerators: tuple[str, ...] = ACCELERATORS, unique: bool = True) -> LatencyDataset:
    """Accel-NASBench rows with ``<acc>_ms`` (ms per image) and ``<acc>_rel_std`` columns.

    ``path``: the CSV, the benchmarks folder or ``accel_nasbench/`` (default
    :func:`~surrogate.datasets.base.benchmarks_dir`). ``unique``: drop repeated networks
    (see :func:`anb_rows`). ``info`` counts the dropped rows.
    """
    pd = require_pandas()
    bad = [a for a in accelerators if a not in ACCELERATORS]
    if bad or not accelerators:
        raise ValueError(f"accelerators: {bad[0] if bad else 'none'!r} is not one of "
                         f"{', '.join(ACCELERATORS)}")
    need = [f"throughput_{a}_{k}" for a in accelerators for k in ("img_s", "std")]
    r = anb_rows(path, need=need, accelerators=accelerators, unique=unique)
    p = r.path
    out = pd.DataFrame(r.rows, columns=r.columns, dtype=str)
    num = [c for c in out.columns if c != "result_id"]
    out[num] = out[num].replace("", "nan").astype(np.float64)
    out["result_id"] = out["result_id"].astype(np.int64)
    for a in accelerators:
        thr = out[f"throughput_{a}_img_s"].to_numpy()
        if not (np.isfinite(thr).all() and (thr > 0).all()):
            raise ValueError(f"{p}: throughput_{a}_img_s must be positive")
        out[f"{a}_ms"] = 1000.0 / thr
        out[f"{a}_rel_std"] = out[f"throughput_{a}_std"].to_numpy() / thr
    return LatencyDataset(name="accel_nasbench", space="anb", frame=tag_frame(out, LICENSE, SOURCE, p),
                          indices=r.canonical, canonical=r.canonical, devices=tuple(accelerators),
                          license=LICENSE, path=p, source=SOURCE, info=r.info)
