"""The relaxation behind the gradient controller: per-decision (Gumbel-)softmax over the
space's one-hot layout and the MnasNet reward of relaxed architectures, with autograd.

A relaxed architecture is a ``(n, space.onehot_width)`` tensor of per-decision
probability vectors laid out like ``space.onehot``; the reward is ``ACC * (LAT / T) ** w``
(:mod:`search.reward`) on the differentiable surrogates' outputs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

_LAYOUTS: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _layout(cards: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gather index (D, max card), padding mask, flat positions) of the grouped layout."""
    key = tuple(int(c) for c in cards)
    if key not in _LAYOUTS:
        mc = max(key)
        offs = np.concatenate([[0], np.cumsum(key)[:-1]])
        gather = np.zeros((len(key), mc), dtype=np.int64)
        mask = np.ones((len(key), mc), dtype=bool)
        flat = []
        for j, (o, c) in enumerate(zip(offs, key)):
            gather[j, :c] = o + np.arange(c)
            mask[j, :c] = False
            flat += [j * mc + k for k in range(c)]
        _LAYOUTS[key] = (torch.as_tensor(gather), torch.as_tensor(mask), torch.as_tensor(flat))
    return _LAYOUTS[key]


def padded_groups(x: torch.Tensor, cards: list[int]) -> torch.Tensor:
    """Per-decision values ``(..., W)`` as ``(..., n_decisions, max card)``, zero-padded."""
    gather, mask, _ = _layout(cards)
    return x[..., gather].masked_fill(mask, 0.0)


def grouped_softmax(logits: torch.Tensor, cards: list[int], hard: bool = False) -> torch.Tensor:
    """Per-decision softmax of ``(..., W)`` logits (groups of ``cards`` columns); ``hard``:
    straight-through one-hots (exact argmax one-hot forward, softmax gradient)."""
    gather, mask, flat = _layout(cards)
    z = logits[..., gather].masked_fill(mask, -math.inf)
    soft = torch.softmax(z, dim=-1)
    if hard:
        onehot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
        soft = onehot - soft.detach() + soft
    return soft.flatten(-2)[..., flat]


def gumbel_softmax(logits: torch.Tensor, cards: list[int], tau: float, n: int,
                   generator: torch.Generator | None = None, hard: bool = True) -> torch.Tensor:
    """``n`` relaxed one-hot samples per row of ``logits`` ``(m, W)`` -> ``(m, n, W)``.

    Per decision (groups of ``cards`` columns) a Gumbel-softmax at temperature
    ``tau``; ``hard``: straight-through (exact one-hot forward, soft gradient).
    """
    m, w = logits.shape
    u = torch.rand((m, n, w), generator=generator, dtype=logits.dtype).clamp_(1e-10, 1 - 1e-10)
    g = -torch.log(-torch.log(u))
    return grouped_softmax((logits[:, None, :] + g) / tau, cards, hard)


def relaxed_reward(acc: torch.Tensor, lat: torch.Tensor, target_ms: torch.Tensor | float,
                   alpha: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor:
    """``ACC * (LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else ``beta`` (autograd-safe)."""
    ratio = lat.clamp(min=1e-6) / target_ms
    w = torch.where(ratio <= 1, torch.as_tensor(alpha, dtype=lat.dtype),
                    torch.as_tensor(beta, dtype=lat.dtype))
    return acc.clamp(min=1e-4) * torch.exp(w * torch.log(ratio))


class RelaxedObjective(nn.Module):
    """Relaxed MnasNet reward of relaxed architectures, one reward setting per chain."""

    def __init__(self, accuracy: nn.Module, latency: nn.Module, target_ms: np.ndarray,
                 alpha: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.accuracy, self.latency = accuracy, latency
        self.register_buffer("target", torch.as_tensor(target_ms, dtype=torch.float64))
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float64))
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``(m, n, W)`` -> reward, accuracy, latency, each ``(m, n)``."""
        m, n, w = x.shape
        flat = x.reshape(m * n, w)
        acc = self.accuracy(flat).to(torch.float64).reshape(m, n)
        lat = self.latency(flat).to(torch.float64).reshape(m, n)
        r = relaxed_reward(acc, lat, self.target[:, None], self.alpha[:, None], self.beta[:, None])
        return r, acc, lat

