"""Image-folder data for training: discovery, splits, augmentation, samplers.

Layout (ImageNet's): ``root/train/<class>/*.jpg|png``, ``root/val/<class>/*``.
Images are decoded with Pillow and turned into tensors through numpy (no
torchvision). Augmentation follows the MnasNet release: training images get a
random-resized crop (area ``scale``, aspect ``ratio``, 10 tries, else the
evaluation crop) resized bicubically to the architecture's resolution and a
horizontal flip with probability 0.5; evaluation images get a centred square crop
of ``eval_crop`` (0.875) of the shorter side resized to ``res`` (the release's
``res / (res + 32)`` is 0.875 at 224).

Randomness is a pure function of ``(seed, epoch, index)``, so a sample looks the
same whichever worker, process or resumed run loads it. Datasets return
``uint8`` CHW tensors; :func:`normalize` turns a batch into ImageNet-normalised
floats on the training device (4x less to copy than floats).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

Sample = tuple[str, int]


@dataclass(frozen=True)
class ImageSplits:
    """Class names and (path, label) samples of a training and a validation split."""

    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    source: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes (sub-folders of the train split)."""
        return len(self.classes)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def find_classes(split_dir: str | os.PathLike) -> list[str]:
    """Sorted class-folder names of one split folder (``FileNotFoundError``/``ValueError``)."""
    d = Path(split_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder {d} does not exist (expected {d}/<class>/<images>)")
    classes = sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {d} has no class sub-folders (expected {d}/<class>/<images>)")
    return classes


def list_images(split_dir: str | os.PathLike, classes: Sequence[str] | None = None,
                *, require_each: bool = True) -> tuple[list[str], list[Sample]]:
    """``(classes, samples)`` of one split folder, sorted; labels index ``classes``.

    With ``classes`` given, the folder must hold exactly those class folders. With
    ``require_each``, a class folder without images is an error.
    """
    d = Path(split_dir)
    found = find_classes(d)
    if classes is not None:
        classes = list(classes)
        if found != sorted(classes):
            missing = sorted(set(classes) - set(found))
            extra = sorted(set(found) - set(classes))
            parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + \
                    ([f"unexpected {', '.join(extra[:5])}"] if extra else [])
            raise ValueError(f"class folders of {d} differ from the training classes: "
                             + "; ".join(parts))
    else:
        classes = found
    samples: list[Sample] = []
    for label, c in enumerate(classes):
        files = sorted(e.name for e in os.scandir(d / c) if e.is_file() and _is_image(e.name))
        if not files and require_each:
            raise ValueError(f"class folder {d / c} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        samples.extend((str(d / c / f), label) for f in files)
    if not samples:
        raise ValueError(f"image folder {d} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return classes, samples


def image_folder_splits(root: str | os.PathLike) -> ImageSplits:
    """The ``train/`` and ``val/`` splits of ``root``; their class sets must agree."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"data folder {root} has no {split}/ folder "
                                    f"(expected {root}/train/<class>/*, {root}/val/<class>/*)")
    classes, train = list_images(root / "train")
    _, val = list_images(root / "val", classes, require_each=False)
    return ImageSplits(tuple(classes), tuple(train), tuple(val), source=str(root))


def holdout_split(train_dir: str | os.PathLike, holdout: int | float = 50,
                  seed: int = 0) -> ImageSplits:
    """Split a training folder into a proxy-training part and a held-out validation part.

    ``holdout`` is images per class (an int; the paper holds out 50K ImageNet
    images, 50 per class) or a fraction of each class (a float in (0, 1)). The
    choice per class is a seeded random draw, stratified by class.
    """
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)):
        raise ValueError(f"holdout must be images per class (int) or a fraction, got {holdout!r}")
    if isinstance(holdout, float) and not 0.0 < holdout < 1.0:
        raise ValueError(f"a holdout fraction must be in (0, 1), got {holdout}")
    if isinstance(holdout, int) and holdout < 1:
        raise ValueError(f"holdout must be >= 1 image per class, got {holdout}")
    train_dir = Path(train_dir)
    classes, samples = list_images(train_dir)
    by_class: list[list[Sample]] = [[] for _ in classes]
    for s in samples:
        by_class[s[1]].append(s)
    rng = np.random.default_rng([int(seed), 0x4D4E4153])
    keep, held = [], []
    for c, items in zip(classes, by_class):
        n = len(items)
        k = holdout if isinstance(holdout, int) else max(1, int(round(holdout * n)))
        if k >= n:
            raise ValueError(f"class folder {train_dir / c} has {n} images, too few to hold out "
                             f"{k} and keep some for training")
        perm = rng.permutation(n)
        held_idx = set(perm[:k].tolist())
        for i, s in enumerate(items):
            (held if i in held_idx else keep).append(s)
    return ImageSplits(tuple(classes), tuple(keep), tuple(held),
                       source=f"{train_dir} (holdout {holdout}, seed {seed})")


# -- crops ---------------------------------------------------------------------------
def center_box(width: int, height: int, fraction: float = 0.875) -> tuple[int, int, int, int]:
    """Centred square crop whose side is ``fraction`` of the shorter image side."""
    crop = max(1, int(fraction * min(width, height)))
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    return left, top, left + crop, top + crop


def random_box(width: int, height: int, rng: np.random.Generator,
               scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10
               ) -> tuple[int, int, int, int] | None:
    """A random crop of area fraction in ``scale`` and aspect (w/h) in ``ratio``.

    ``None`` when no try fits (the caller then uses :func:`center_box`).
    """
    area = width * height
    log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_lo, log_hi)))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    return None


class ImageFolderDataset(torch.utils.data.Dataset):
    """Map-style dataset over ``(path, label)`` samples (works with any sampler).

    ``dataset[i]`` is ``(uint8 tensor (3, resolution, resolution), label)``:
    training augmentation when ``train``, else the evaluation crop. Call
    :meth:`set_epoch` before each epoch so the augmentation changes per epoch.
    """

    def __init__(self, samples: Sequence[Sample], resolution: int, *, train: bool,
                 seed: int = 0, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), eval_crop: float = 0.875):
        if not samples:
            raise ValueError("ImageFolderDataset needs at least one (path, label) sample")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        self.samples = [(str(p), int(y)) for p, y in samples]
        self.resolution = resolution
        self.train = bool(train)
        self.seed = int(seed)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0.0 < eval_crop <= 1.0:
            raise ValueError(f"eval_crop must be in (0, 1], got {eval_crop!r}")
        self.eval_crop = float(eval_crop)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of ``epoch``."""
        self.epoch = int(epoch)

    @property
    def targets(self) -> list[int]:
        """Class index of every sample, in order."""
        return [y for _, y in self.samples]

    def load(self, index: int) -> np.ndarray:
        """The image at ``index`` after its crop and flip, as uint8 HWC RGB."""
        path, _ = self.samples[index]
        res = self.resolution
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read image {path}: {exc}") from None
        w, h = im.size
        flip = False
        box = None
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            box = random_box(w, h, rng, self.scale, self.ratio)
            flip = bool(rng.random() < 0.5)
        if box is None:
            box = center_box(w, h, self.eval_crop)
        im = im.resize((res, res), Image.Resampling.BICUBIC, box=box)
        if flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(im, dtype=np.uint8)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        arr = self.load(index)
        x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return x, self.samples[index][1]


def normalize(images: torch.Tensor, *, channels_last: bool = False,
              mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
              std: Sequence[float] | torch.Tensor = IMAGENET_STD) -> torch.Tensor:
    """uint8 NCHW batch -> float32 ``(x / 255 - mean) / std`` on ``images``' device.

    ``mean``/``std`` are per-channel values in [0, 1], or tensors of shape
    ``(1, C, 1, 1)`` already scaled by 255 and on the device (see
    :func:`normalization_constants`), which avoids a host-to-device copy per batch.
    """
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
        mean, std = normalization_constants(images.device, mean, std)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(memory_format=fmt).float()
    return x.sub_(mean).div_(std)


def normalization_constants(device: torch.device | str,
                            mean: Sequence[float] = IMAGENET_MEAN,
                            std: Sequence[float] = IMAGENET_STD) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean * 255, std * 255)`` as ``(1, C, 1, 1)`` float tensors on ``device``."""
    m = torch.tensor([float(v) * 255.0 for v in mean], device=device).view(1, -1, 1, 1)
    s = torch.tensor([float(v) * 255.0 for v in std], device=device).view(1, -1, 1, 1)
    return m, s


# -- samplers ------------------------------------------------------------------------
class ResumableDistributedSampler(torch.utils.data.Sampler[int]):
    """Shuffled, rank-sharded training order that can start mid-epoch.

    Like ``DistributedSampler(shuffle=True, drop_last=True)``: each epoch is a
    permutation drawn from ``(seed, epoch)``; rank ``r`` of ``w`` takes positions
    ``r, r + w, ...`` of its first ``w * (n // w)`` entries. :meth:`set_start`
    skips the first ``start`` of this rank's indices (samples already consumed
    before a checkpoint).
    """

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if n < num_replicas:
            raise ValueError(f"{n} samples cannot be shared among {num_replicas} processes")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in 0..{num_replicas - 1}")
        self.n = int(n)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0
        self.per_rank = self.n // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch, which seeds the shuffle."""
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank (resuming mid-epoch)."""
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start {start} is outside 0..{self.per_rank}")
        self.start = int(start)

    def indices(self) -> list[int]:
        """This rank's whole order for the current epoch."""
        perm = np.random.default_rng([self.seed, self.epoch, 0x53414D50]).permutation(self.n)
        mine = perm[: self.per_rank * self.num_replicas][self.rank :: self.num_replicas]
        return mine.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation order: rank ``r`` of ``w`` takes ``r, r + w, ...`` (every sample once)."""

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0):
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))
