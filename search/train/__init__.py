"""Training of architectures: the MnasNet recipe, image-folder data, DDP, proxy training.

Proxy *accuracy* (cached, as a search objective) is :mod:`search.accuracy.proxy`,
which imports this package; this package never imports ``search.accuracy``.

Names are loaded on first use (PEP 562), so ``search.train.cli`` -- imported by the
``mnas`` root command -- stays free of torch until ``mnas train`` runs::

    from search.train import TrainConfig, train
    report = train("mnasnet-a1", "/data/imagenet", TrainConfig(), "runs/a1")
"""
from __future__ import annotations

from space.lazy import lazy_exports

_EXPORTS = {
    "data": ("IMAGENET_MEAN", "IMAGENET_STD", "ImageFolderDataset", "ImageSplits",
             "ResumableDistributedSampler", "ShardSampler", "holdout_split", "image_folder_splits",
             "list_images", "normalization_constants", "normalize"),
    "loop": ("Trainer", "train"),
    "proxy": ("proxy_config", "proxy_train"),
    "recipe": ("EMA", "RMSpropTF", "TrainConfig", "lr_at", "make_optimizer", "make_scheduler",
               "param_groups", "peak_lr", "set_bn"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
