"""What a training run writes besides checkpoints: per-epoch metrics and the final report.

Files in the output folder: ``metrics.csv`` / ``metrics.json`` (one row per
epoch, columns :data:`METRIC_COLUMNS`), ``report.json`` (final or last state) and
``final.pt`` (model + EMA weights of a completed run), all written atomically.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from space import format_arch

from .checkpoint import atomic_torch_save, atomic_write_text
from .recipe import peak_lr

METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_top1", "val_loss", "val_top1",
                  "val_top5", "ema_val_loss", "ema_top1", "ema_top5", "images_per_s",
                  "epoch_time_s", "eval_time_s")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class ReportMixin:
    """The metrics and report files of :class:`~search.train.loop.Trainer` (rank 0 writes)."""

    def _write_metrics(self) -> None:
        """``metrics.csv`` and ``metrics.json`` (one row per epoch), written by rank 0."""
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRIC_COLUMNS)
        for row in self.history:
            w.writerow([_fmt(row.get(c)) for c in METRIC_COLUMNS])
        atomic_write_text(self.out_dir / "metrics.csv", buf.getvalue())
        doc = {"arch": format_arch(self.arch), "config": self.cfg.to_dict(),
               "world_size": self.world_size, "global_batch": self.global_batch,
               "steps_per_epoch": self.steps_per_epoch, "epochs": self.history}
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(doc, indent=1) + "\n")


    def _report(self, status: str, wall_s: float) -> dict:
        """The run's report (evaluating the final weights if the last epoch did not); rank 0
        writes it to ``report.json`` and, once completed, the weights to ``final.pt``."""
        last = self.history[-1] if self.history else {}
        final = {}
        if status == "completed":
            if "val_top1" not in last or last.get("epoch") != self.epoch:
                self._sync_buffers()
                raw, ema = self.evaluate(self.model), self.evaluate(self.ema.module)
                final = {"val_loss": raw["loss"], "val_top1": raw["top1"], "val_top5": raw["top5"],
                         "ema_top1": ema["top1"], "ema_top5": ema["top5"]}
            else:
                final = {k: last[k] for k in ("val_loss", "val_top1", "val_top5", "ema_top1", "ema_top5")}
        else:
            final = {k: last.get(k) for k in ("val_loss", "val_top1", "val_top5", "ema_top1", "ema_top5")}
        images = self.step * self.global_batch
        report = {
            "status": status,
            "arch": format_arch(self.arch),
            "arch_name": self.arch_requested.name,
            "num_classes": self.arch.num_classes,
            "data": self.splits.source,
            "n_train": len(self.train_set), "n_val": len(self.val_set),
            "epochs": self.epoch, "epochs_planned": self.cfg.epochs, "steps": self.step,
            "top1": final["val_top1"], "top5": final["val_top5"],
            "top1_ema": final["ema_top1"], "top5_ema": final["ema_top5"],
            "val_loss": final["val_loss"],
            "train_loss_first": self.history[0]["train_loss"] if self.history else None,
            "train_loss_last": last.get("train_loss"),
            "images_per_s": images / self.train_time_s if self.train_time_s > 0 else None,
            "train_time_s": self.train_time_s,
            "wall_time_s": wall_s,
            "world_size": self.world_size, "global_batch": self.global_batch,
            "steps_per_epoch": self.steps_per_epoch,
            "peak_lr": peak_lr(self.cfg, self.global_batch),
            "device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
            "resumed_from_step": self.resumed_from,
            "out_dir": str(self.out_dir),
            "config": self.cfg.to_dict(),
        }
        self._sync_buffers()
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "report.json",
                              json.dumps(report, indent=1, default=float) + "\n")
            if status == "completed":
                atomic_torch_save({"arch": format_arch(self.arch), "classes": list(self.splits.classes),
                                   "model": self.model.state_dict(),
                                   "ema": self.ema.module.state_dict()}, self.out_dir / "final.pt")
        return report


__all__ = ["METRIC_COLUMNS", "ReportMixin"]
