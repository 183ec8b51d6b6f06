"""Distilled surrogates: a small MLP on the one-hot encoding fitted to a teacher.

:func:`distill` fits a :class:`DistilledMLP` to any ``teacher(canonical idx) -> values``
on random members of a space (a latency predictor without a closed differentiable
form, :func:`surrogate.predict.relaxed.relaxed_latency`); :func:`distill_accuracy`
distils an accuracy objective (for ``anb`` the shipped XGBoost surrogate, so a
gradient search stays offline), reports its Kendall tau against the teacher on
held-out members and caches the model in a file.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from space.spaces import SearchSpace

#: distillation defaults (teacher predictions on random members of the space)
DISTILL_SAMPLES = 16_000
DISTILL_HELDOUT = 2_000
DISTILL_HIDDEN = (128, 128)
DISTILL_EPOCHS = 15
CACHE_FORMAT = 1


def _raw_samples(space: SearchSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` index vectors drawn uniformly per decision (not canonicalised)."""
    return np.stack([rng.integers(0, d.n, size=n) for d in space.decisions], axis=1).astype(np.int64)


def _canonical(space: SearchSpace, idx: np.ndarray) -> np.ndarray:
    return np.array([space.canonical(r) for r in idx], dtype=np.int64).reshape(len(idx), -1)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


class DistilledMLP(nn.Module):
    """An MLP on the one-hot encoding; ``log_output`` returns ``exp`` of the net (ms)."""

    def __init__(self, width: int, hidden: tuple[int, ...] = DISTILL_HIDDEN, y_mean: float = 0.0,
                 y_scale: float = 1.0, log_output: bool = False):
        super().__init__()
        layers, prev = [], width
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)
        self.width, self.hidden = width, tuple(int(h) for h in hidden)
        self.register_buffer("y_stats", torch.tensor([y_mean, y_scale], dtype=torch.float32))
        self.log_output = log_output

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """The distilled value for (relaxed) one-hot encodings ``probs``."""
        if probs.dim() == 1:
            probs = probs[None, :]
        out = self.net(probs.to(torch.float32))[:, 0] * self.y_stats[1] + self.y_stats[0]
        return torch.exp(out) if self.log_output else out


def distill(teacher: Callable[[np.ndarray], np.ndarray], space: SearchSpace, *,
            n: int = DISTILL_SAMPLES, heldout: int = DISTILL_HELDOUT, seed: int = 0,
            hidden: tuple[int, ...] = DISTILL_HIDDEN, epochs: int = DISTILL_EPOCHS,
            lr: float = 3e-3, log_target: bool = False) -> tuple[DistilledMLP, dict]:
    """Fit a :class:`DistilledMLP` to ``teacher(canonical idx)`` on ``n`` random members.

    Inputs are raw (uniform per decision) index vectors, so the MLP also sees
    non-canonical encodings with their canonical network's value. AdamW (weight
    decay 1e-5), linear warm-up then cosine decay to 1% of ``lr``. Returns the model
    and ``info`` with the Kendall tau / R^2 against the teacher on ``heldout`` fresh
    members and the wall time.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    raw = _raw_samples(space, rng, n + heldout)
    y = np.asarray(teacher(_canonical(space, raw)), dtype=np.float64)
    if log_target:
        y = np.log(y)
    x = torch.as_tensor(space.onehot(raw))
    tr, te = slice(0, n), slice(n, n + heldout)
    mu, sd = float(y[tr].mean()), float(y[tr].std()) or 1.0
    yt = torch.as_tensor((y - mu) / sd, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DistilledMLP(space.onehot_width, hidden, mu, sd, log_output=log_target)
        opt = torch.optim.AdamW(model.net.parameters(), lr, weight_decay=1e-5)
        bs = 256
        total, warm = epochs * math.ceil(n / bs), max(1, epochs * math.ceil(n / bs) // 10)
        gen = torch.Generator().manual_seed(seed)
        k = 0
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i: i + bs]
                # linear warm-up, then cosine decay to 1% of lr
                opt.param_groups[0]["lr"] = lr * (
                    (k + 1) / warm if k < warm else
                    0.01 + 0.495 * (1 + math.cos(math.pi * (k - warm) / max(1, total - warm))))
                loss = nn.functional.mse_loss(model.net(x[b])[:, 0], yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                k += 1
    model.eval()
    with torch.no_grad():
        pred = model.net(x[te])[:, 0].numpy() * sd + mu
    truth = y[te]
    ss = float(np.sum((truth - truth.mean()) ** 2))
    info = {"samples": n, "heldout": heldout, "seed": seed, "hidden": list(model.hidden),
            "epochs": epochs, "log_target": log_target,
            "kendall_tau": _kendall(pred, truth),
            "r2": 1 - float(np.sum((truth - pred) ** 2)) / ss if ss > 0 else float("nan"),
            "seconds": round(time.perf_counter() - t0, 3)}
    return model, info


def _teacher(accuracy) -> Callable[[np.ndarray], np.ndarray]:
    if getattr(accuracy, "name", "") == "proxy-train":
        raise ValueError("gradient search needs a cheap accuracy surrogate to distil "
                         "(anb or macro), not proxy-train")
    evaluate = getattr(accuracy, "_evaluate", None)  # the uncached batch hook: no key strings
    return evaluate if callable(evaluate) else (lambda idx: accuracy.batch(idx))


def distill_accuracy(accuracy, *, cache: str | os.PathLike | None = None, seed: int = 0,
                     n: int = DISTILL_SAMPLES, heldout: int = DISTILL_HELDOUT,
                     epochs: int = DISTILL_EPOCHS) -> tuple[DistilledMLP, dict]:
    """An MLP distilled from an accuracy objective (``name``, ``space``, ``fingerprint``
    and ``_evaluate`` or ``batch``); returns ``(model, info)``.

    With ``cache`` (a ``.pt`` file), a model distilled earlier from the same teacher
    (objective name and fingerprint) for the same space is loaded instead (tensors and
    plain types only); a new one is written there atomically.
    """
    space = accuracy.space
    key = {"format": CACHE_FORMAT, "objective": accuracy.name, "space": space.name,
           "width": space.onehot_width, "fingerprint": getattr(accuracy, "fingerprint", None)}
    path = Path(cache) if cache else None
    if path is not None and path.is_file():
        from ..tensorfile import load_tensors

        try:
            state = load_tensors(path, map_location=None)
        except (ValueError, OSError):  # refused or unreadable cache: distil again
            state = None
        if isinstance(state, dict) and state.get("key") == key:
            info = state["info"]
            model = DistilledMLP(space.onehot_width, tuple(info["hidden"]))
            model.load_state_dict(state["model"])
            model.eval()
            return model, {**info, "cache": str(path), "from_cache": True}
    model, info = distill(_teacher(accuracy), space, n=n, heldout=heldout, seed=seed, epochs=epochs)
    info = {"teacher": f"{accuracy.name} ({key['fingerprint']})", **info}
    if path is not None:
        from ..atomic import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"key": key, "info": info, "model": model.state_dict()}, tmp)
        info = {**info, "cache": str(path), "from_cache": False}
    return model, info
