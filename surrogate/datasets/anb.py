"""Accel-NASBench (Ahmad et al., 2024) throughput as ms per image. License: Apache-2.0.

``accel_nasbench/anb_results.csv`` gives throughput (images/s) on A100, RTX 3090,
TPUv2 and TPUv3 with its run-to-run std. :func:`load_anb` converts it to ms per
image (``1000 / throughput``) and a relative std (``std / throughput``). Rows lacking
any kept throughput are dropped, and a repeated architecture (same canonical network)
keeps its first row, so no network can sit on both sides of a split.
"""
from __future__ import annotations

import os

import numpy as np

from space import get_space

from ..frames import require_pandas
from .base import LatencyDataset, benchmark_file, tag_frame

LICENSE = "Apache-2.0"
SOURCE = "Accel-NASBench (Ahmad et al., 2024), MnasNet-like space on ImageNet"
CSV = "accel_nasbench/anb_results.csv"
ACCELERATORS = ("a100", "3090", "tpuv2", "tpuv3")


def load_anb(path: str | os.PathLike | None = None, *,
             accelerators: tuple[str, ...] = ACCELERATORS) -> LatencyDataset:
    """Accel-NASBench rows with ``<acc>_ms`` (ms per image) and ``<acc>_rel_std`` columns.

    ``path``: the CSV, the benchmarks folder or ``accel_nasbench/`` (default
    :func:`~surrogate.datasets.base.benchmarks_dir`). ``info`` counts the dropped rows.
    """
    pd = require_pandas()
    p = benchmark_file(path, CSV, "Accel-NASBench results")
    bad = [a for a in accelerators if a not in ACCELERATORS]
    if bad or not accelerators:
        raise ValueError(f"accelerators: {bad[0] if bad else 'none'!r} is not one of "
                         f"{', '.join(ACCELERATORS)}")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    need = [f"throughput_{a}_{k}" for a in accelerators for k in ("img_s", "std")]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: not the Accel-NASBench results CSV (missing {missing[0]})")
    sp = get_space("anb")
    keep, idx, seen = [], [], set()
    n_missing = n_dup = 0
    for i, r in enumerate(df.to_dict("records")):
        if not all(r[f"throughput_{a}_img_s"].strip() for a in accelerators):
            n_missing += 1
            continue
        try:
            key = sp.canonical(sp.from_row(r))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{p}: row {i + 2}: {exc}") from None
        if key in seen:
            n_dup += 1
            continue
        seen.add(key)
        keep.append(i)
        idx.append(key)
    out = df.iloc[keep].reset_index(drop=True)
    num = [c for c in out.columns if c != "result_id"]
    out[num] = out[num].replace("", "nan").astype(np.float64)
    out["result_id"] = out["result_id"].astype(np.int64)
    for a in accelerators:
        thr = out[f"throughput_{a}_img_s"].to_numpy()
        if not (np.isfinite(thr).all() and (thr > 0).all()):
            raise ValueError(f"{p}: throughput_{a}_img_s must be positive")
        out[f"{a}_ms"] = 1000.0 / thr
        out[f"{a}_rel_std"] = out[f"throughput_{a}_std"].to_numpy() / thr
    arr = np.array(idx, dtype=np.int64).reshape(len(idx), sp.n_decisions)
    info = {"rows_in_file": len(df), "rows_missing_a_throughput": n_missing,
            "repeated_architectures_dropped": n_dup, "rows_used": len(out)}
    return LatencyDataset(name="accel_nasbench", space="anb", frame=tag_frame(out, LICENSE, SOURCE, p),
                          indices=arr, canonical=arr, devices=tuple(accelerators), license=LICENSE,
                          path=p, source=SOURCE, info=info)
