"""Differentiable latency of a relaxed architecture (FBNet / ProxylessNAS style).

A relaxed architecture is one probability vector per decision (e.g. softmax of
logits), concatenated in the space's decision order into a tensor of shape
``(batch, space.onehot_width)``; a one-hot vector is an ordinary architecture.

- :class:`ExpectedTableLatency`: the exact expectation of the operator-table sum
  when each decision is drawn independently from its vector. Blocks whose input
  width depends on earlier choices are handled by carrying the distribution of
  the width from position to position.
- :class:`RelaxedMLP`: a fitted encoding-only MLP latency model evaluated on the
  relaxed encoding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .compiled import CompiledSpace


def _split(space, probs: torch.Tensor) -> list[torch.Tensor]:
    if probs.dim() == 1:
        probs = probs[None, :]
    if probs.dim() != 2 or probs.shape[1] != space.onehot_width:
        raise ValueError(f"{space.name}: expected probabilities of shape (n, {space.onehot_width}), "
                         f"got {tuple(probs.shape)}")
    return list(torch.split(probs, [d.n for d in space.decisions], dim=1))


def joint_probs(ds: Sequence[torch.Tensor]) -> torch.Tensor:
    """(n, prod of choices): probability of each joint choice of one position's decisions."""
    joint = ds[0]
    n = joint.shape[0]
    for d in ds[1:]:
        joint = (joint[:, :, None] * d[:, None, :]).reshape(n, -1)
    return joint


class ExpectedTableLatency(nn.Module):
    """E[table sum] (ms) under independent per-decision distributions."""

    def __init__(self, compiled: CompiledSpace, dtype: torch.dtype = torch.float32):
        super().__init__()
        missing = compiled.missing_ops()
        if missing:
            raise ValueError(f"the table lacks {len(missing)} operator(s) of space "
                             f"{compiled.space.name!r} (e.g. {missing[0].key()}); the expectation "
                             f"needs them all (measure them or add an operator-level fallback)")
        self.space = compiled.space
        self.cards = [p.cards for p in compiled.positions]
        for i, p in enumerate(compiled.positions):
            self.register_buffer(f"lat{i}", torch.as_tensor(p.lat, dtype=dtype))
            n_next = (len(compiled.positions[i + 1].in_widths) if i + 1 < len(compiled.positions)
                      else len(compiled.head_ms))
            trans = np.zeros(p.nxt.shape + (n_next,))
            ii, cc = np.indices(p.nxt.shape)
            trans[ii, cc, p.nxt] = 1.0
            self.register_buffer(f"trans{i}", torch.as_tensor(trans, dtype=dtype))
        self.register_buffer("head", torch.as_tensor(compiled.head_ms, dtype=dtype))
        self.stem_ms = float(compiled.stem_ms)
        self.n_positions = len(compiled.positions)

    @classmethod
    def from_table(cls, space: str, table) -> "ExpectedTableLatency":
        """Build from a space name and an OpTable / CSV path / ``'shipped:<profile>'``."""
        from space.spaces import get_space

        from .features import resolve_table

        return cls(CompiledSpace.build(get_space(space), resolve_table(table, space)))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected latency (ms) under per-decision probabilities ``probs`` (n, onehot_width)."""
        parts = _split(self.space, probs)
        n = parts[0].shape[0]
        state = torch.ones(n, 1, dtype=parts[0].dtype, device=parts[0].device)
        total = torch.full((n,), self.stem_ms, dtype=parts[0].dtype, device=parts[0].device)
        k = 0
        for i in range(self.n_positions):
            joint = joint_probs(parts[k: k + len(self.cards[i])])
            k += len(self.cards[i])
            lat = getattr(self, f"lat{i}")
            total = total + ((state @ lat) * joint).sum(dim=1)
            trans = getattr(self, f"trans{i}")  # (n_in, n_combo, n_out)
            state = torch.einsum("ni,nc,ico->no", state, joint, trans)
        return total + state @ self.head


class RelaxedMLP(nn.Module):
    """A fitted ``LatencyModel(model='mlp', parts=('encoding',))`` on relaxed encodings."""

    def __init__(self, latency_model):
        super().__init__()
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(latency_model, "regressor_")
        if latency_model.model != "mlp" or tuple(latency_model.parts) != ("encoding",) \
                or latency_model.residual:
            raise ValueError("RelaxedMLP needs LatencyModel(model='mlp', parts=('encoding',), "
                             "residual=False): other features are not functions of the encoding")
        self.mlp = latency_model.regressor_
        self.space = latency_model.features_.space_
        self.network = self.mlp.network_  # registered so .parameters() / .to() see it

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Latency (ms) the MLP predicts for relaxed encodings ``probs`` (n, onehot_width)."""
        if probs.dim() == 1:
            probs = probs[None, :]
        _split(self.space, probs)
        dtype = next(self.network.parameters()).dtype
        return torch.exp(self.mlp.torch_forward(probs.to(dtype)))
