"""Checkpoints of a training run: atomic files, RNG states, and what a run resumes from.

A checkpoint holds the model, EMA, optimizer, scheduler, grad scaler,
step/epoch/position in the epoch, the running epoch statistics, the metric history
and the RNG states (:meth:`CheckpointMixin.state_dict`); on resumption it is checked
to belong to the run (architecture, settings, batch, classes) and loaded. Files are
written to a per-process temporary name and moved into place.
"""
from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from space import format_arch
from surrogate.atomic import write_atomic
from surrogate.tensorfile import load_tensors

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
#: settings that may change between a checkpoint and its resumption
RESUMABLE_CHANGES = frozenset({"epochs", "num_workers", "ckpt_every_steps", "eval_every"})


# -- atomic files ----------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`surrogate.tables.write_atomic`)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, text)


# -- random state ----------------------------------------------------------------------
def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed set before update ``step`` on ``rank`` (dropout), from the run's seed."""
    return int(np.random.SeedSequence([seed, rank, step, 0x44524F50]).generate_state(1)[0])


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA, if started) RNG states, as tensors and plain types."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the trainer's part ------------------------------------------------------------------
class CheckpointMixin:
    """Checkpoint writing and resumption of :class:`~search.train.loop.Trainer`.

    The trainer provides the model, EMA, optimizer, scheduler, scaler, sampler,
    splits, settings and progress counters, and ``_sync_buffers``.
    """

    @property
    def checkpoint_path(self) -> Path:
        """Where the rolling checkpoint of this run lives."""
        return self.out_dir / CHECKPOINT

    def state_dict(self) -> dict:
        """Everything a checkpoint holds."""
        return {
            "format": CHECKPOINT_FORMAT,
            "arch": format_arch(self.arch),
            "classes": list(self.splits.classes),
            "config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "steps_per_epoch": self.steps_per_epoch,
            "step": self.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "sampler": {"seed": self.sampler.seed, "epoch": self.epoch,
                        "position": self.step_in_epoch * self.cfg.batch_size},
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "running": dict(self._running),
            "history": list(self.history),
            "train_time_s": self.train_time_s,
            "rng": rng_state(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (rank 0 only); returns its path there."""
        self._sync_buffers()
        self._saved_step = self.step
        if not self.is_main:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.state_dict(), self.checkpoint_path)
        return self.checkpoint_path

    def _maybe_resume(self) -> None:
        """Continue from ``checkpoint.pt`` if there is one (``ValueError`` if of another run)."""
        path = self.checkpoint_path
        if not path.is_file():
            return
        ck = load_tensors(path, what="checkpoint",
                          advice="delete it or use another output folder")
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
        if ck["arch"] != format_arch(self.arch):
            raise ValueError(f"{path} holds a checkpoint of another architecture ({ck['arch']}); "
                             f"use another output folder or turn resume off")
        old, new = ck["config"], self.cfg.to_dict()
        diff = sorted(k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k])
        if diff:
            raise ValueError(f"{path} was written with other settings ({', '.join(diff)}); "
                             f"use the same settings, another output folder, or turn resume off")
        if ck["global_batch"] != self.global_batch or ck["steps_per_epoch"] != self.steps_per_epoch:
            raise ValueError(f"{path} was written with global batch {ck['global_batch']} and "
                             f"{ck['steps_per_epoch']} steps per epoch; this run has "
                             f"{self.global_batch} and {self.steps_per_epoch}")
        if list(ck["classes"]) != list(self.splits.classes):
            raise ValueError(f"{path} was trained on other classes than {self.splits.source}")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.step, self.epoch = int(ck["step"]), int(ck["epoch"])
        self.step_in_epoch = int(ck["step_in_epoch"])
        self._running = {k: float(v) for k, v in ck["running"].items()}
        self.history = [dict(r) for r in ck["history"]]
        self.train_time_s = float(ck["train_time_s"])
        set_rng_state(ck["rng"])
        self.resumed_from = self.step


__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "RESUMABLE_CHANGES", "CheckpointMixin",
           "atomic_torch_save", "atomic_write_text", "rng_state", "set_rng_state", "step_seed"]
