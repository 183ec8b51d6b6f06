"""Proxy training: a short run of the recipe scored on images held out of the training set.

The paper proxy-trains every sampled model for 5 epochs on ImageNet with 50K
training images held out as validation. :func:`proxy_train` does that on any image
folder: :func:`~search.train.data.holdout_split` of ``data_dir/train`` (or of
``data_dir`` itself when it has no ``train/``) and a run of :func:`proxy_config`'s
shortened recipe. Caching the results by architecture, and using them as an
accuracy objective, is :mod:`search.accuracy.proxy`'s business, not this module's.
"""
from __future__ import annotations

import os
from pathlib import Path

from space import Arch

from .recipe import TrainConfig


def proxy_config(epochs: int = 5, seed: int = 0, base: TrainConfig | None = None) -> TrainConfig:
    """The recipe shortened for proxy training.

    Warm-up becomes ``min(base.warmup_epochs, epochs / 5)`` epochs (the full
    recipe's 5 would cover the whole proxy run); every other setting is the
    recipe's. Checkpoints are written every epoch only.
    """
    base = TrainConfig() if base is None else base
    return base.replace(epochs=epochs, seed=seed, warmup_epochs=min(base.warmup_epochs, epochs / 5),
                        ckpt_every_steps=0)


def proxy_train(arch: Arch, data_dir: str | os.PathLike, cfg: TrainConfig,
                out_dir: str | os.PathLike, holdout: int | float = 50, *, progress: bool = False,
                device: str | None = None) -> dict:
    """Train ``arch`` with ``cfg`` (see :func:`proxy_config`) on ``data_dir`` minus a holdout.

    ``holdout`` images per class (or that fraction) of the training folder, drawn
    with ``cfg.seed``, are the validation split. Returns :func:`~search.train.loop.train`'s
    report; an interrupted run resumes from its checkpoint in ``out_dir``.
    """
    from .data import holdout_split
    from .loop import train

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    train_dir = data_dir / "train" if (data_dir / "train").is_dir() else data_dir
    splits = holdout_split(train_dir, holdout, cfg.seed)
    return train(arch, splits, cfg, out_dir, resume=True, progress=progress, device=device)


__all__ = ["proxy_config", "proxy_train"]
