"""The training loop: the :class:`Trainer` (epochs, steps, evaluation, DDP) and :func:`train`.

One process per device. Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment)
the process group is initialised from the environment (NCCL on CUDA, gloo on CPU)
and the model is wrapped in ``DistributedDataParallel``; only rank 0 writes files.
Mixed precision (``torch.autocast`` + ``GradScaler``) and channels-last are on by
default on CUDA.

Exact resumption: the training order is a function of ``(seed, epoch)``, each
sample's augmentation of ``(seed, epoch, index)``, and the global torch RNG (dropout)
is re-seeded from ``(seed, rank, step)`` before every step. A checkpoint holds the
model, EMA, optimizer, scheduler, grad scaler, step/epoch/position in the epoch,
the running epoch statistics, the metric history and the RNG states, so a job
stopped after any checkpoint -- killed, interrupted, or at ``max_steps`` -- resumes
to the state an uninterrupted run reaches (bit-for-bit on CPU; within
floating-point tolerance where kernels are non-deterministic).

Files in ``out_dir``: ``checkpoint.pt`` (latest, every ``ckpt_every_steps`` and
every epoch), ``metrics.csv`` / ``metrics.json`` (one row per epoch),
``report.json`` (final or last state) and ``final.pt`` (model + EMA weights).
All are written to a temporary file and moved into place. What a checkpoint holds
and how it is checked on resumption is :mod:`search.train.checkpoint`; the
metrics and report files are :mod:`search.train.report`.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from space import Arch, resolve_arch
from space.build import build_model

from .checkpoint import (CHECKPOINT, CHECKPOINT_FORMAT, CheckpointMixin, atomic_torch_save,
                         atomic_write_text, step_seed)
from .data import (ImageFolderDataset, ImageSplits, ResumableDistributedSampler, ShardSampler,
                   image_folder_splits, normalization_constants, normalize)
from .recipe import EMA, TrainConfig, lr_at, make_optimizer, make_scheduler, set_bn
from .report import METRIC_COLUMNS, ReportMixin

_STOP_CHECK_EVERY = 10  # steps between agreeing on a stop request across ranks


# -- small helpers ---------------------------------------------------------------------
def _worker_init(_: int) -> None:
    # Ctrl-C / SIGTERM are handled by the training process, which stops cleanly;
    # loader workers must not die under it mid-batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _resolve_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None:
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r} (expected cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


class Trainer(CheckpointMixin, ReportMixin):
    """Train one architecture on an image-folder dataset with :class:`TrainConfig`.

    ``data`` is a folder with ``train/`` and ``val/`` or an :class:`ImageSplits`
    (e.g. from :func:`holdout_split`). The architecture's classifier is resized
    to the dataset's class count when they differ. With ``resume``, an existing
    ``out_dir/checkpoint.pt`` of the same architecture and settings is continued.
    """

    def __init__(self, arch: Arch | str, data: str | os.PathLike | ImageSplits,
                 cfg: TrainConfig | None = None, out_dir: str | os.PathLike = "mnas_runs/train", *,
                 resume: bool = True, progress: bool = True,
                 device: str | torch.device | None = None):
        self.cfg = cfg = TrainConfig() if cfg is None else cfg
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.out_dir = Path(out_dir)
        self.progress = bool(progress)
        requested = resolve_arch(arch) if isinstance(arch, str) else arch
        if not isinstance(requested, Arch):
            raise ValueError(f"arch must be an Arch or an architecture string, got {type(arch).__name__}")
        self.splits = data if isinstance(data, ImageSplits) else image_folder_splits(data)
        if not self.splits.val:
            raise ValueError(f"the validation split of {self.splits.source} is empty")
        self._setup_processes(device)
        self._setup_model(requested)
        self._setup_data()
        self._setup_optimisation()
        self._reset_progress()
        if resume:
            self._maybe_resume()

    def _setup_processes(self, device: str | torch.device | None) -> None:
        """Device, process group (joined or started from ``WORLD_SIZE``), AMP and layout."""
        cfg = self.cfg
        self._owns_group = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = _resolve_device(device, local_rank)
        if dist.is_available() and dist.is_initialized():
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        elif world > 1:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
            self._owns_group = True
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.distributed = self.world_size > 1
        self.is_main = self.rank == 0
        on_cuda = self.device.type == "cuda"
        self.amp = on_cuda if cfg.amp is None else bool(cfg.amp)
        self.amp_dtype = getattr(torch, cfg.amp_dtype)
        self.channels_last = on_cuda if cfg.channels_last is None else bool(cfg.channels_last)
        if on_cuda:
            torch.backends.cudnn.benchmark = True

    def _setup_model(self, requested: Arch) -> None:
        """The model for the data's classes (and ``cfg.dropout``), its EMA and DDP wrapper."""
        cfg = self.cfg
        arch_t = requested
        if arch_t.num_classes != self.splits.num_classes:
            arch_t = arch_t.replace(num_classes=self.splits.num_classes, name=arch_t.name)
        if cfg.dropout is not None and cfg.dropout != arch_t.dropout:
            arch_t = arch_t.replace(dropout=cfg.dropout, name=arch_t.name)
        self.arch_requested, self.arch = requested, arch_t
        model = set_bn(build_model(arch_t, init_seed=cfg.seed), cfg).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.train()
        self.ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup)
        if self.distributed:
            on_cuda = self.device.type == "cuda"
            self.net: nn.Module = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if on_cuda else None)
        else:
            self.net = model

    def _setup_data(self) -> None:
        """Train and validation sets, steps per epoch and the resumable sampler."""
        cfg = self.cfg
        res = self.arch.resolution
        self.train_set = ImageFolderDataset(self.splits.train, res, train=True, seed=cfg.seed,
                                            scale=cfg.crop_scale, ratio=cfg.crop_ratio,
                                            eval_crop=cfg.eval_crop)
        self.val_set = ImageFolderDataset(self.splits.val, res, train=False,
                                          eval_crop=cfg.eval_crop)
        self.global_batch = cfg.batch_size * self.world_size
        self.steps_per_epoch = len(self.train_set) // self.world_size // cfg.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training split of {self.splits.source} has {len(self.train_set)} "
                             f"images, fewer than one global batch of {self.global_batch}")
        self.sampler = ResumableDistributedSampler(len(self.train_set), num_replicas=self.world_size,
                                                   rank=self.rank, seed=cfg.seed)

    def _setup_optimisation(self) -> None:
        """Optimizer, LR schedule, AMP grad scaler, loss and input normalisation."""
        cfg = self.cfg
        self.optimizer = make_optimizer(self.model, cfg, self.global_batch)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps_per_epoch, self.global_batch)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp and self.amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self._mean, self._std = normalization_constants(self.device)

    def _reset_progress(self) -> None:
        """Step, epoch and history counters of a fresh run (a resume overwrites them)."""
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.history: list[dict] = []
        self.train_time_s = 0.0
        self._running = {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "time_s": 0.0}
        self._stop_requested = False
        self._saved_step: int | None = None
        self.resumed_from: int | None = None

    # -- distributed helpers -------------------------------------------------------------
    def _sync_buffers(self) -> None:
        """Give every rank rank 0's BN statistics (model and EMA)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for module in (self.model, self.ema.module):
                for b in module.buffers():
                    dist.broadcast(b, 0)

    def _all_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def _should_stop(self) -> bool:
        if not self.distributed:
            return self._stop_requested
        t = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        self._stop_requested = bool(t.item() > 0)
        return self._stop_requested

    # -- one step ----------------------------------------------------------------------------
    def _train_step(self, images: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer update; returns the (detached) loss and the correct-prediction count."""
        torch.manual_seed(step_seed(self.cfg.seed, self.rank, self.step))
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x = normalize(images, channels_last=self.channels_last, mean=self._mean, std=self._std)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.net(x)
        loss = self.criterion(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.model)
        correct = (logits.detach().argmax(1) == labels).sum()
        return loss.detach(), correct

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, module: nn.Module | None = None) -> dict:
        """Loss (plain cross-entropy), top-1 and top-5 of ``module`` (default: the model)
        on the validation split, summed over all ranks."""
        module = self.model if module is None else module
        was_training = module.training
        module.eval()
        loader = torch.utils.data.DataLoader(
            self.val_set, batch_size=self.cfg.batch_size,
            sampler=ShardSampler(len(self.val_set), num_replicas=self.world_size, rank=self.rank),
            num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init)
        k = min(5, self.arch.num_classes)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        top1 = torch.zeros((), dtype=torch.float64, device=self.device)
        top5 = torch.zeros((), dtype=torch.float64, device=self.device)
        n = 0
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            x = normalize(images, channels_last=self.channels_last, mean=self._mean, std=self._std)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = module(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").double()
            pred = logits.topk(k, dim=1).indices
            hit = pred == labels[:, None]
            top1 += hit[:, 0].sum()
            top5 += hit.any(dim=1).sum()
            n += labels.numel()
        module.train(was_training)
        loss_sum, top1, top5, n = self._all_sum([loss_sum.item(), top1.item(), top5.item(), float(n)])
        return {"loss": loss_sum / n, "top1": top1 / n, "top5": top5 / n, "n": int(n)}

    # -- the loop ------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):  # noqa: ARG001 - signal API
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.is_main:
                print(f"\nmnas train: {signal.Signals(signum).name} received; saving a checkpoint "
                      f"after this step (send it again to abort)", file=sys.stderr, flush=True)

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _progress_bar(self, epoch: int):
        if not (self.progress and self.is_main):
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is optional
            return None
        return tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, file=sys.stderr,
                    desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step", leave=False,
                    dynamic_ncols=True)

    def run(self, max_steps: int | None = None) -> dict:
        """Train up to ``cfg.epochs`` (or ``max_steps`` updates) and return the report.

        Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and returns
        with ``status == "interrupted"``; ``max_steps`` likewise with ``"stopped"``.
        """
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                      or max_steps < 0):
            raise ValueError(f"max_steps must be None or an integer >= 0, got {max_steps!r}")
        cfg, t_wall = self.cfg, time.perf_counter()
        previous = self._install_signals()
        status = "completed"
        try:
            while self.epoch < cfg.epochs:
                if self._should_stop():
                    status = "interrupted"
                    break
                if max_steps is not None and self.step >= max_steps:
                    status = "stopped"
                    break
                status = self._run_epoch(max_steps)
                if status != "completed":
                    break
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
        if status != "completed" and self._saved_step != self.step:
            self.save_checkpoint()
        report = self._report(status, time.perf_counter() - t_wall)
        return report

    def _run_epoch(self, max_steps: int | None) -> str:
        cfg, epoch = self.cfg, self.epoch
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.step_in_epoch * cfg.batch_size)
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_size=cfg.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init)
        bar = self._progress_bar(epoch)
        self.model.train()
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        correct_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        t0 = time.perf_counter()

        def flush_running() -> None:
            nonlocal seen, t0
            now = time.perf_counter()
            self._running["loss_sum"] += loss_acc.item()
            self._running["correct"] += correct_acc.item()
            self._running["seen"] += seen
            self._running["time_s"] += now - t0
            self.train_time_s += now - t0
            loss_acc.zero_()
            correct_acc.zero_()
            seen, t0 = 0, now

        status = "completed"
        try:
            for images, labels in loader:
                loss, correct = self._train_step(images, labels)
                bs = labels.shape[0]
                loss_acc += loss.double() * bs
                correct_acc += correct.double()
                seen += bs
                self.step += 1
                self.step_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                    if self.step % 10 == 0 or self.step_in_epoch == self.steps_per_epoch:
                        bar.set_postfix(loss=f"{loss.item():.3f}",
                                        lr=f"{self.scheduler.get_last_lr()[0]:.4g}")
                if self.step_in_epoch == self.steps_per_epoch:
                    break
                stop = (self._stop_requested if not self.distributed
                        else self.step % _STOP_CHECK_EVERY == 0 and self._should_stop())
                if stop:
                    status = "interrupted"
                elif max_steps is not None and self.step >= max_steps:
                    status = "stopped"
                if status != "completed":
                    flush_running()
                    return status  # run() writes the checkpoint
                if cfg.ckpt_every_steps and self.step % cfg.ckpt_every_steps == 0:
                    flush_running()
                    self.save_checkpoint()
                    t0 = time.perf_counter()  # checkpoint writing is not training time
        finally:
            if bar is not None:
                bar.close()
        flush_running()
        self._end_epoch()
        if max_steps is not None and self.step >= max_steps and self.epoch < cfg.epochs:
            return "stopped"
        return status

    def _end_epoch(self) -> None:
        cfg = self.cfg
        r = self._running
        loss_sum, correct, seen = self._all_sum([r["loss_sum"], r["correct"], r["seen"]])
        epoch_time = r["time_s"]
        self.epoch += 1
        self.step_in_epoch = 0
        row: dict[str, Any] = {
            "epoch": self.epoch, "step": self.step,
            "lr": lr_at(self.step - 1, cfg, self.steps_per_epoch, self.global_batch),
            "train_loss": loss_sum / seen, "train_top1": correct / seen,
            "images_per_s": seen / epoch_time if epoch_time > 0 else None,
            "epoch_time_s": epoch_time,
        }
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            t = time.perf_counter()
            self._sync_buffers()
            raw, ema = self.evaluate(self.model), self.evaluate(self.ema.module)
            row.update(val_loss=raw["loss"], val_top1=raw["top1"], val_top5=raw["top5"],
                       ema_val_loss=ema["loss"], ema_top1=ema["top1"], ema_top5=ema["top5"],
                       eval_time_s=time.perf_counter() - t)
        self.history.append(row)
        self._running = {"loss_sum": 0.0, "correct": 0.0, "seen": 0.0, "time_s": 0.0}
        if self.is_main and self.progress:
            msg = (f"epoch {self.epoch}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                   f"train top-1 {row['train_top1']:.4f}")
            if "val_top1" in row:
                msg += f"  val top-1 {row['val_top1']:.4f}  ema top-1 {row['ema_top1']:.4f}"
            print(msg, file=sys.stderr, flush=True)
        self._write_metrics()
        self.save_checkpoint()

    def close(self) -> None:
        """Tear down the process group if this trainer created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False


def train(arch: Arch | str, data_dir: str | os.PathLike | ImageSplits, cfg: TrainConfig | None = None,
          out_dir: str | os.PathLike = "mnas_runs/train", *, resume: bool = True,
          progress: bool = True, max_steps: int | None = None,
          device: str | torch.device | None = None) -> dict:
    """Train ``arch`` on ``data_dir`` (``train/``, ``val/`` class folders) with ``cfg``.

    Returns the report (``status``, top-1/top-5 of the model and its EMA on the
    validation split, images/s, wall time, ...), also written to
    ``out_dir/report.json``. See :class:`Trainer` for resumption and files.
    """
    trainer = Trainer(arch, data_dir, cfg, out_dir, resume=resume, progress=progress, device=device)
    try:
        return trainer.run(max_steps=max_steps)
    finally:
        trainer.close()


__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "METRIC_COLUMNS", "Trainer", "atomic_torch_save",
           "atomic_write_text", "train"]
