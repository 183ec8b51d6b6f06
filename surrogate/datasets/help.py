"""HELP (Lee et al., NeurIPS 2021) FBNet-space latencies. License: MIT (Copyright 2024 HayeonLee).

Two layouts are read:

- :func:`load_help_fbnet`: the flat CSV ``help_fbnet/fbnet_latency.csv`` (``arch_id``,
  ``layer0`` .. ``layer21`` op names, one ``<device>_ms`` column per device);
- :func:`load_help_layout`: HELP's own per-device layout, the folder ``data/fbnet``
  of its repository: ``metainfo.pt`` (a dict whose ``'arch'`` is a list of dicts with
  an ``'op_idx_list'`` of 22 op indices) and ``latency/<device>.pt`` (one latency in ms
  per architecture, as a list or tensor), read with ``torch.load(weights_only=True)``
  so no code in the files is run.

HELP's op indices are this project's ``fbnet`` op order (``k3_e1`` .. ``k5_e6``, 8 = skip).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from space import get_space
from space.spaces.fbnet import OPS

from ..frames import require_pandas
from .base import LatencyDataset, benchmark_file, benchmarks_dir, tag_frame

LICENSE = "MIT"
SOURCE = "HELP: hardware-adaptive efficient latency prediction (Lee et al., NeurIPS 2021)"
CSV = "help_fbnet/fbnet_latency.csv"
N_LAYERS = 22


def _dataset(name: str, ops: np.ndarray, lat: dict[str, np.ndarray], path: Path,
             extra: dict | None = None) -> LatencyDataset:
    sp = get_space("fbnet")
    raw = np.asarray(ops, dtype=np.int64)
    can = np.array([sp.canonical(r) for r in raw], dtype=np.int64).reshape(raw.shape)
    cols = {f"layer{i}": np.asarray(OPS, dtype=object)[raw[:, i]] for i in range(N_LAYERS)}
    pd = require_pandas()
    df = pd.DataFrame({**(extra or {}), **cols, **{f"{d}_ms": v for d, v in lat.items()}})
    df = df.astype({c: pd.CategoricalDtype(list(OPS)) for c in cols})
    return LatencyDataset(name=name, space="fbnet", frame=tag_frame(df, LICENSE, SOURCE, path),
                          indices=raw, canonical=can, devices=tuple(lat), license=LICENSE,
                          path=path, source=SOURCE, info={"rows": len(df)})


def load_help_fbnet(path: str | os.PathLike | None = None, *,
                    devices: tuple[str, ...] | None = None) -> LatencyDataset:
    """The HELP FBNet CSV (MIT): 22 layer ops and per-device end-to-end latency (ms).

    ``path``: the CSV, the benchmarks folder or ``help_fbnet/`` (default
    :func:`~surrogate.datasets.base.benchmarks_dir`). ``devices``: a subset to keep.
    """
    pd = require_pandas()
    p = benchmark_file(path, CSV, "HELP FBNet latencies")
    df = pd.read_csv(p)
    layers = [f"layer{i}" for i in range(N_LAYERS)]
    missing = [c for c in ["arch_id", *layers] if c not in df.columns]
    have = [c[:-3] for c in df.columns if c.endswith("_ms")]
    if missing or not have:
        raise ValueError(f"{p}: not the HELP FBNet CSV (expected arch_id, layer0..layer21 and "
                         f"<device>_ms columns; missing {missing[:3] or 'every <device>_ms'})")
    devs = _pick(have, devices, p)
    sp = get_space("fbnet")
    try:
        ops = np.array([sp.from_ops(r) for r in df[layers].astype(str).to_numpy().tolist()])
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    lat = {d: _positive(df[f"{d}_ms"].to_numpy(dtype=np.float64), f"{p}: {d}_ms") for d in devs}
    return _dataset("help_fbnet", ops, lat, p, {"arch_id": df["arch_id"].to_numpy(np.int64)})


def load_help_layout(path: str | os.PathLike, *,
                     devices: tuple[str, ...] | None = None) -> LatencyDataset:
    """HELP's own FBNet files (MIT): ``<path>/metainfo.pt`` and ``<path>/latency/<device>.pt``.

    ``path`` is HELP's ``data/fbnet`` folder (or a benchmarks folder holding
    ``help_fbnet/metainfo.pt``). ``devices``: a subset (default: every ``latency/*.pt``).
    """
    root = benchmarks_dir(path)
    if not (root / "metainfo.pt").is_file() and (root / "help_fbnet" / "metainfo.pt").is_file():
        root = root / "help_fbnet"
    meta_p = root / "metainfo.pt"
    if not meta_p.is_file():
        raise FileNotFoundError(f"HELP layout: no metainfo.pt in {root} (expected HELP's "
                                f"data/fbnet folder: metainfo.pt and latency/<device>.pt)")
    meta = _torch_load(meta_p)
    archs = meta.get("arch") if isinstance(meta, dict) else None
    if not isinstance(archs, (list, tuple)) or not archs:
        raise ValueError(f"{meta_p}: expected a dict with a non-empty list 'arch'")
    try:
        ops = np.array([[int(v) for v in a["op_idx_list"]] for a in archs], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{meta_p}: every 'arch' entry needs an 'op_idx_list' of "
                         f"{N_LAYERS} integers") from None
    if ops.ndim != 2 or ops.shape[1] != N_LAYERS or (ops < 0).any() or (ops > 8).any():
        raise ValueError(f"{meta_p}: op_idx_list must hold {N_LAYERS} op indices in 0..8")
    have = sorted(f.stem for f in (root / "latency").glob("*.pt"))
    if not have:
        raise FileNotFoundError(f"HELP layout: no latency/<device>.pt files in {root}")
    lat = {}
    for d in _pick(have, devices, root / "latency"):
        f = root / "latency" / f"{d}.pt"
        obj = _torch_load(f)
        if isinstance(obj, dict) and "latency" in obj:
            obj = obj["latency"]
        try:
            v = np.asarray([float(x) for x in obj], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{f}: expected a list or tensor of latencies (ms)") from None
        if len(v) != len(ops):
            raise ValueError(f"{f}: {len(v)} latencies for {len(ops)} architectures in {meta_p}")
        lat[d] = _positive(v, str(f))
    return _dataset("help_layout", ops, lat, root, {"arch_id": np.arange(len(ops))})


def _torch_load(path: Path):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in the torch/measure extras
        raise ImportError("HELP's .pt files need torch: pip install 'mnas-surrogate[torch]'") from None
    del torch  # imported above only to name the extra when it is missing
    from ..tensorfile import load_tensors

    return load_tensors(path)


def _pick(have: list[str], want, where) -> list[str]:
    if want is None:
        return list(have)
    want = [want] if isinstance(want, str) else list(want)
    bad = [d for d in want if d not in have]
    if bad:
        raise KeyError(f"{where}: no device {bad[0]!r}; expected one of {', '.join(have)}")
    return want


def _positive(v: np.ndarray, what: str) -> np.ndarray:
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"{what}: latencies must be positive finite numbers (ms)")
    return v


__all__ = ["LICENSE", "load_help_fbnet", "load_help_layout"]
