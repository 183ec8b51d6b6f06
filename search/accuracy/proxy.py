"""Proxy training as an accuracy objective, cached by canonical architecture.

:func:`proxy_accuracy` scores an architecture by the held-out top-1 of a short
run of the recipe (:func:`search.train.proxy.proxy_train`). Results go to a
:class:`~search.accuracy.base.JsonlCache` in ``cache_dir`` named after a hash of
the settings (data folder, holdout, epochs, seed, recipe), one line per
architecture keyed by its canonical string, so an architecture is trained once
per settings. :class:`ProxyTrainAccuracy` is ``get_accuracy("proxy-train")``.

This module imports the training code; ``search.train`` never imports this one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from search.train.proxy import proxy_config, proxy_train
from search.train.recipe import TrainConfig
from space import Arch, format_arch, resolve_arch

from .base import AccuracyObjective, JsonlCache

DEFAULT_CACHE_DIR = "mnas_runs/proxy"


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
    :func:`~search.train.proxy.proxy_config`; ``use_ema`` scores the EMA weights
    (else the raw ones). An interrupted proxy run resumes from its checkpoint on
    the next call.
    """
    a = resolve_arch(arch) if isinstance(arch, str) else arch
    if not isinstance(a, Arch):
        raise ValueError(f"arch must be an Arch or an architecture string, got {type(arch).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    key = format_arch(a)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    pcfg = proxy_config(epochs, seed, cfg)
    settings = _settings(data_dir, epochs, holdout, seed, pcfg, use_ema)
    cache = JsonlCache(proxy_cache_path(cache_dir, settings))
    hit = cache.get(key)
    if hit is not None:
        return float(hit["accuracy"])
    run_dir = Path(cache_dir) / "runs" / hashlib.sha1(
        (key + cache.path.name).encode()).hexdigest()[:16]
    report = proxy_train(a, data_dir, pcfg, run_dir, holdout, progress=progress, device=device)
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


class ProxyTrainAccuracy(AccuracyObjective):
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
                 device: str | None = None, cache_path: str | os.PathLike | None = None) -> None:
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
        """The stem of the proxy cache file: a hash of every proxy setting."""
        pcfg = proxy_config(self.epochs, self.seed, self.train_cfg)
        settings = _settings(self.data, self.epochs, self.holdout, self.seed, pcfg, self.use_ema)
        return proxy_cache_path(self.cache_dir, settings).stem

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        return np.array([proxy_accuracy(self.space.to_arch(tuple(int(v) for v in row)), self.data,
                                        self.epochs, self.holdout, self.cache_dir, self.seed,
                                        cfg=self.train_cfg, use_ema=self.use_ema,
                                        progress=self.progress, device=self.device)
                         for row in np.asarray(idx)], dtype=np.float64)


__all__ = ["DEFAULT_CACHE_DIR", "ProxyTrainAccuracy", "proxy_accuracy", "proxy_cache_path"]
