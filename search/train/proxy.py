"""Proxy training as an accuracy objective, cached by canonical architecture.

The paper proxy-trains every sampled model for 5 epochs on ImageNet with 50K
training images held out as validation. :func:`proxy_accuracy` does that on any
image folder: :func:`~search.train.data.holdout_split` of ``data_dir/train`` (or of
``data_dir`` itself when it has no ``train/``), a short run of the recipe, and the
held-out top-1. Results go to a JSON-lines file in ``cache_dir`` named after a
hash of the settings (data folder, holdout, epochs, seed, recipe), one line per
architecture keyed by its canonical string, so an architecture is trained once per
settings. Appends are single ``write`` calls on an ``O_APPEND`` file; a torn last
line (a killed writer) is skipped when reading and fenced off by the next append.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from space import Arch, format_arch, resolve_arch

from .recipe import TrainConfig

try:  # the accuracy-objective interface of search/accuracy.py (issue D)
    from search.accuracy import AccuracyObjective as _AccuracyObjective
except ImportError:  # pragma: no cover - that module absent
    _AccuracyObjective = None

DEFAULT_CACHE_DIR = "mnas_runs/proxy"


def proxy_config(epochs: int = 5, seed: int = 0, base: TrainConfig | None = None) -> TrainConfig:
    """The recipe shortened for proxy training.

    Warm-up becomes ``min(base.warmup_epochs, epochs / 5)`` epochs (the full
    recipe's 5 would cover the whole proxy run); every other setting is the
    recipe's. Checkpoints are written every epoch only.
    """
    base = TrainConfig() if base is None else base
    return base.replace(epochs=epochs, seed=seed, warmup_epochs=min(base.warmup_epochs, epochs / 5),
                        ckpt_every_steps=0)


class ProxyCache:
    """A JSON-lines file of proxy results, one object per line with an ``arch`` key."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[str, dict]:
        """All complete records by architecture string (later lines win)."""
        out: dict[str, dict] = {}
        if not self.path.is_file():
            return out
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                if i < len(lines) - 1:
                    warnings.warn(f"{self.path}: skipping unreadable line {i + 1}", stacklevel=2)
                continue
            if isinstance(rec, dict) and isinstance(rec.get("arch"), str):
                out[rec["arch"]] = rec
        return out

    def get(self, arch: str) -> dict | None:
        """The record of ``arch`` (a canonical string), or ``None``."""
        return self.load().get(arch)

    def append(self, record: dict) -> None:
        """Append ``record`` as one line, in one ``write`` call, then ``fsync``."""
        if not isinstance(record.get("arch"), str):
            raise ValueError("a proxy record needs an 'arch' string")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":  # a torn last line: fence it off
                    data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _settings(data_dir: Path, epochs: int, holdout: int | float, seed: int, cfg: TrainConfig,
              use_ema: bool) -> dict:
    return {"data": str(data_dir.resolve()), "epochs": epochs, "holdout": holdout, "seed": seed,
            "metric": "top1_ema" if use_ema else "top1", "config": cfg.to_dict()}


def proxy_cache_path(cache_dir: str | os.PathLike, settings: dict) -> Path:
    """The cache file for one combination of proxy settings."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"proxy_{digest}.jsonl"


def proxy_accuracy(arch: Arch | str, data_dir: str | os.PathLike, epochs: int = 5,
                   holdout: int | float = 50, cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
                   seed: int = 0, *, cfg: TrainConfig | None = None, use_ema: bool = True,
                   progress: bool = False, device: str | None = None) -> float:
    """Held-out top-1 (in [0, 1]) after ``epochs`` of proxy training; cached.

    ``cfg`` is the base recipe (default: the paper's), shortened by
    :func:`proxy_config`; ``use_ema`` scores the EMA weights (else the raw ones).
    An interrupted proxy run resumes from its checkpoint on the next call.
    """
    from .data import holdout_split
    from .loop import train

    a = resolve_arch(arch) if isinstance(arch, str) else arch
    if not isinstance(a, Arch):
        raise ValueError(f"arch must be an Arch or an architecture string, got {type(arch).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    key = format_arch(a)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    train_dir = data_dir / "train" if (data_dir / "train").is_dir() else data_dir
    pcfg = proxy_config(epochs, seed, cfg)
    settings = _settings(data_dir, epochs, holdout, seed, pcfg, use_ema)
    cache = ProxyCache(proxy_cache_path(cache_dir, settings))
    hit = cache.get(key)
    if hit is not None:
        return float(hit["accuracy"])
    splits = holdout_split(train_dir, holdout, seed)
    run_dir = Path(cache_dir) / "runs" / hashlib.sha1(
        (key + cache.path.name).encode()).hexdigest()[:16]
    report = train(a, splits, pcfg, run_dir, resume=True, progress=progress, device=device)
    if report["status"] != "completed":
        raise KeyboardInterrupt(f"proxy training of {key} was interrupted; its checkpoint is in "
                                f"{run_dir}")
    acc = float(report["top1_ema"] if use_ema else report["top1"])
    if int(os.environ.get("RANK", "0")) == 0:
        cache.append({"arch": key, "accuracy": acc, "top1": report["top1"],
                      "top1_ema": report["top1_ema"], "top5": report["top5"],
                      "top5_ema": report["top5_ema"], "epochs": epochs, "steps": report["steps"],
                      "train_time_s": report["train_time_s"], "n_train": report["n_train"],
                      "n_val": report["n_val"], "settings": settings})
        shutil.rmtree(run_dir, ignore_errors=True)
    return acc


if _AccuracyObjective is not None:
    class ProxyTrainAccuracy(_AccuracyObjective):
        """``get_accuracy("proxy-train", data=DIR)``: :func:`proxy_accuracy` as an objective.

        Architectures of ``space`` (default ``mnasnet``) are proxy-trained on
        ``data`` (``epochs``, ``holdout`` per class, ``seed``) and scored by held-out
        top-1; results persist in ``cache_dir`` across runs, and in ``cache_path``
        when given, as for every objective.
        """

        name = "proxy-train"

        def __init__(self, data: str | os.PathLike | None = None, *, space: str = "mnasnet",
                     epochs: int = 5, holdout: int | float = 50,
                     cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, seed: int = 0,
                     cfg: TrainConfig | None = None, use_ema: bool = True, progress: bool = False,
                     device: str | None = None, cache_path: str | os.PathLike | None = None):
            if data is None:
                raise ValueError("accuracy 'proxy-train' needs data: an image folder with train/")
            self.data = Path(data)
            if not self.data.is_dir():
                raise FileNotFoundError(f"data folder {self.data} does not exist")
            self.space_name = space
            self.epochs, self.holdout, self.seed = epochs, holdout, seed
            self.cache_dir, self.train_cfg, self.use_ema = Path(cache_dir), cfg, use_ema
            self.progress, self.device = progress, device
            super().__init__(cache_path)

        @property
        def fingerprint(self) -> str:
            pcfg = proxy_config(self.epochs, self.seed, self.train_cfg)
            settings = _settings(self.data, self.epochs, self.holdout, self.seed, pcfg, self.use_ema)
            return proxy_cache_path(self.cache_dir, settings).stem

        def _evaluate(self, idx: np.ndarray) -> np.ndarray:
            return np.array([proxy_accuracy(self.space.to_arch(tuple(int(v) for v in row)), self.data,
                                            self.epochs, self.holdout, self.cache_dir, self.seed,
                                            cfg=self.train_cfg, use_ema=self.use_ema,
                                            progress=self.progress, device=self.device)
                             for row in np.asarray(idx)], dtype=np.float64)
