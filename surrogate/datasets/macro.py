"""NAS-Bench-Macro (Su et al., 2021: "Prioritized Architecture Sampling with
Monto-Carlo Tree Search", CVPR) CIFAR-10 accuracy. License: Apache-2.0 (Copyright 2021 Xiu Su).

``nas_bench_macro/nas-bench-macro_cifar10.json`` maps an 8-digit key (one op per
layer) to three test accuracies, their mean and std, params and FLOPs. It holds no
latencies: pair it with this project's measured tables (space ``nasbench-macro``).
"""
from __future__ import annotations

import json
import os

import numpy as np

from space import get_space

from ..frames import require_pandas
from .base import LatencyDataset, benchmark_file, tag_frame

LICENSE = "Apache-2.0"
SOURCE = "NAS-Bench-Macro (Su et al., CVPR 2021), CIFAR-10"
JSON = "nas_bench_macro/nas-bench-macro_cifar10.json"


def load_macro(path: str | os.PathLike | None = None, *, unique: bool = False) -> LatencyDataset:
    """NAS-Bench-Macro rows: ``key``, ``canonical_key``, ``accuracy`` and ``std`` (fractions),
    ``test_acc_0..2`` (%), ``params``, ``flops``.

    ``path``: the JSON, the benchmarks folder or ``nas_bench_macro/``. ``unique``: keep one
    row per canonical network (the first key of each class in file order). No devices.
    """
    pd = require_pandas()
    p = benchmark_file(path, JSON, "NAS-Bench-Macro JSON")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{p}: expected a non-empty object of 8-digit key -> record")
    sp = get_space("nasbench-macro")
    rows, idx, can, seen = [], [], [], set()
    for key, rec in raw.items():
        try:
            i = sp.from_key(key)
            c = sp.canonical(i)
            accs = [float(a) for a in rec["test_acc"]]
            row = {"key": key, "canonical_key": sp.to_key(c),
                   "accuracy": float(rec["mean_acc"]) / 100.0, "std": float(rec["std"]) / 100.0,
                   **{f"test_acc_{j}": a for j, a in enumerate(accs)},
                   "params": int(rec["params"]), "flops": int(rec["flops"])}
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{p}: entry {key!r} is not a NAS-Bench-Macro record (8-digit key "
                             f"with test_acc, mean_acc, std, params, flops)") from None
        if unique and c in seen:
            continue
        seen.add(c)
        rows.append(row)
        idx.append(i)
        can.append(c)
    df = pd.DataFrame(rows)
    info = {"keys_in_file": len(raw), "networks": len(seen), "rows": len(df)}
    return LatencyDataset(name="nas_bench_macro", space="nasbench-macro",
                          frame=tag_frame(df, LICENSE, SOURCE, p),
                          indices=np.array(idx, dtype=np.int64), canonical=np.array(can, dtype=np.int64),
                          devices=(), license=LICENSE, path=p, source=SOURCE, info=info)
