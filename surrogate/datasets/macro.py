"""NAS-Bench-Macro (Su et al., 2021: "Prioritized Architecture Sampling with
Monto-Carlo Tree Search", CVPR) CIFAR-10 accuracy. License: Apache-2.0 (Copyright 2021 Xiu Su).

``nas_bench_macro/nas-bench-macro_cifar10.json`` maps an 8-digit key (one op per
layer) to three test accuracies, their mean and std, params and FLOPs. It holds no
latencies: pair it with this project's measured tables (space ``nasbench-macro``).

:func:`macro_rows` is the one reading of the file (no pandas; the accuracy objective
``search.accuracy.MacroAccuracy`` uses it); :func:`load_macro` makes it a DataFrame.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from space import get_space

from ..frames import require_pandas
from .base import LatencyDataset, benchmark_file, tag_frame

LICENSE = "Apache-2.0"
SOURCE = "NAS-Bench-Macro (Su et al., CVPR 2021), CIFAR-10"
JSON = "nas_bench_macro/nas-bench-macro_cifar10.json"


class MacroRows(NamedTuple):
    """The file read: one dict per kept key, index vectors as in the file and canonical."""

    path: Path
    rows: list[dict]
    indices: np.ndarray
    canonical: np.ndarray
    info: dict


def _row(sp, key: str, rec: dict, partial: bool) -> tuple[dict, tuple[int, ...], tuple[int, ...]]:
    i = sp.from_key(key)
    c = sp.canonical(i)
    if partial:  # only mean_acc is needed; the rest defaults (std NaN, params/flops -1)
        accs = [float(a) for a in rec.get("test_acc", ())]
        std, params, flops = rec.get("std", float("nan")), rec.get("params", -1), rec.get("flops", -1)
    else:
        accs = [float(a) for a in rec["test_acc"]]
        std, params, flops = rec["std"], rec["params"], rec["flops"]
    row = {"key": key, "canonical_key": sp.to_key(c),
           "accuracy": float(rec["mean_acc"]) / 100.0, "std": float(std) / 100.0,
           **{f"test_acc_{j}": a for j, a in enumerate(accs)},
           "params": int(params), "flops": int(flops)}
    return row, i, c


def macro_rows(path: str | os.PathLike | None = None, *, unique: bool = False,
               partial: bool = False) -> MacroRows:
    """Read and check the NAS-Bench-Macro JSON (see :func:`load_macro` for the arguments).

    ``partial``: an entry needs only ``mean_acc`` (``std`` defaults to NaN, ``params`` and
    ``flops`` to -1, ``test_acc_*`` are left out), as the accuracy objective accepts.
    """
    p = benchmark_file(path, JSON, "NAS-Bench-Macro JSON")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{p}: expected a non-empty object of 8-digit key -> record")
    sp = get_space("nasbench-macro")
    fields = "a mean_acc" if partial else "test_acc, mean_acc, std, params, flops"
    rows, idx, can, seen = [], [], [], set()
    for key, rec in raw.items():
        try:
            row, i, c = _row(sp, key, rec, partial)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{p}: entry {key!r} is not a NAS-Bench-Macro record (8-digit key "
                             f"with {fields})") from None
        if unique and c in seen:
            continue
        seen.add(c)
        rows.append(row)
        idx.append(i)
        can.append(c)
    info = {"keys_in_file": len(raw), "networks": len(seen), "rows": len(rows)}
    return MacroRows(p, rows, np.array(idx, dtype=np.int64), np.array(can, dtype=np.int64), info)


def load_macro(path: str | os.PathLike | None = None, *, unique: bool = False) -> LatencyDataset:
    """NAS-Bench-Macro rows: ``key``, ``canonical_key``, ``accuracy`` and ``std`` (fractions),
    ``test_acc_0..2`` (%), ``params``, ``flops``.

    ``path``: the JSON, the benchmarks folder or ``nas_bench_macro/``. ``unique``: keep one
    row per canonical network (the first key of each class in file order). No devices.
    """
    pd = require_pandas()
    r = macro_rows(path, unique=unique)
    df = pd.DataFrame(r.rows)
    return LatencyDataset(name="nas_bench_macro", space="nasbench-macro",
                          frame=tag_frame(df, LICENSE, SOURCE, r.path),
                          indices=r.indices, canonical=r.canonical,
                          devices=(), license=LICENSE, path=r.path, source=SOURCE, info=r.info)
