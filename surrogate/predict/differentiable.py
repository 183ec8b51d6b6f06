"""Differentiable latency of a relaxed architecture (FBNet / ProxylessNAS style).

A relaxed architecture is one probability vector per decision (e.g. softmax of
logits), concatenated in the space's decision order into a tensor of shape
``(batch, space.onehot_width)``; a one-hot vector is an ordinary architecture.

- :class:`ExpectedTableLatency`: the exact expectation of the operator-table sum
  when each decision is drawn independently from its vector. Blocks whose input
  width depends on earlier choices are handled by carrying the distribution of
  the width from position to position.
- :class:`RelaxedFeatures`: the :class:`~surrogate.predict.features.ArchFeatures` of
  a relaxed architecture (expected terms through the one shared feature layout).
- :class:`RelaxedMLP`: a fitted encoding-only MLP latency model evaluated on the
  relaxed encoding.

Whole predictors (calibrated sums, learned and distilled models) get their
differentiable form from :func:`surrogate.predict.relaxed.relaxed_latency`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .compiled import CompiledSpace
from .layout import FeatureLayout, combine


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


class ExpectedTerms(nn.Module):
    """Expected per-position and head terms of a compiled space under independent
    per-decision distributions (the input width carried as a distribution from
    position to position); on one-hots, the exact terms.

    ``forward(parts)`` (the per-decision probability blocks) returns
    ``(per position (n, n_positions, len(terms)), head (n, len(head_terms)))``.
    ``terms`` name :class:`~surrogate.predict.compiled.Position` arrays, ``head_terms``
    ``head_ms`` / ``head_madds`` / ``head_params``.
    """

    def __init__(self, compiled: CompiledSpace, terms: Sequence[str], head_terms: Sequence[str],
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cards = [p.cards for p in compiled.positions]
        self.n_positions = len(compiled.positions)
        self.n_terms = len(terms)
        for i, p in enumerate(compiled.positions):
            vals = np.stack([getattr(p, k) for k in terms], axis=-1) if terms else \
                np.zeros(p.nxt.shape + (0,))
            self.register_buffer(f"terms{i}", torch.as_tensor(vals, dtype=dtype))
            n_next = (len(compiled.positions[i + 1].states) if i + 1 < self.n_positions
                      else len(compiled.head_ms))
            trans = np.zeros(p.nxt.shape + (n_next,))
            ii, cc = np.indices(p.nxt.shape)
            trans[ii, cc, p.nxt] = 1.0
            self.register_buffer(f"trans{i}", torch.as_tensor(trans, dtype=dtype))
        heads = {"head_ms": compiled.head_ms, "head_madds": compiled.head_madds,
                 "head_params": compiled.head_params}
        head = np.stack([heads[k] for k in head_terms], axis=1) if head_terms else \
            np.zeros((len(compiled.head_ms), 0))
        self.register_buffer("head", torch.as_tensor(head, dtype=dtype))

    def forward(self, parts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected terms of the relaxed architectures given per decision in ``parts``."""
        n = parts[0].shape[0]
        state = torch.ones(n, 1, dtype=parts[0].dtype, device=parts[0].device)
        per_pos, k = [], 0
        for i in range(self.n_positions):
            joint = joint_probs(parts[k: k + len(self.cards[i])])
            k += len(self.cards[i])
            both = (state[:, :, None] * joint[:, None, :]).reshape(n, -1)  # (n, in x combo)
            terms, trans = getattr(self, f"terms{i}"), getattr(self, f"trans{i}")
            per_pos.append(both @ terms.reshape(both.shape[1], self.n_terms))
            state = both @ trans.reshape(-1, trans.shape[-1])
        return torch.stack(per_pos, dim=1), state @ self.head


def _check_complete(compiled: CompiledSpace) -> None:
    missing = compiled.missing_ops()
    if missing:
        raise ValueError(f"the table lacks {len(missing)} operator(s) of space "
                         f"{compiled.space.name!r} (e.g. {missing[0].key()}); the expectation "
                         f"needs them all (measure them or add an operator-level fallback)")


class ExpectedTableLatency(nn.Module):
    """E[table sum] (ms) under independent per-decision distributions."""

    def __init__(self, compiled: CompiledSpace, dtype: torch.dtype = torch.float32):
        super().__init__()
        _check_complete(compiled)
        self.space = compiled.space
        self.expected = ExpectedTerms(compiled, ("lat",), ("head_ms",), dtype)
        self.stem_ms = float(compiled.stem_ms)

    @classmethod
    def from_table(cls, space: str, table) -> "ExpectedTableLatency":
        """Build from a space name and an OpTable / CSV path / ``'shipped:<profile>'``."""
        from space.spaces import get_space

        from .features import resolve_table

        return cls(CompiledSpace.build(get_space(space), resolve_table(table, space)))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected latency (ms) under per-decision probabilities ``probs`` (n, onehot_width)."""
        pos, head = self.expected(_split(self.space, probs))
        return self.stem_ms + pos[:, :, 0].sum(dim=1) + head[:, 0]


class RelaxedFeatures(nn.Module):
    """The :class:`~surrogate.predict.features.ArchFeatures` of relaxed architectures.

    The expected per-position terms (:class:`ExpectedTerms`) go through the same
    :class:`~surrogate.predict.layout.FeatureLayout` as ``features.transform``, so
    count and table features are expectations (log features: the log of the
    expectation) and on one-hot inputs the output equals ``features.transform``.
    ``forward`` returns ``(features (n, n_features), expected table sum (n,) or None
    without the table part)``.
    """

    def __init__(self, features, dtype: torch.dtype = torch.float64):
        super().__init__()
        layout: FeatureLayout = features.layout_
        self.space, self.layout, self.dtype = features.space_, layout, dtype
        if "table" in layout.parts:
            _check_complete(layout.compiled)
        self.expected = ExpectedTerms(layout.compiled, layout.position_terms, layout.head_terms,
                                      dtype)
        self._keys = tuple(layout.weights)
        for k, v in layout.weights.items():
            self.register_buffer(f"w_{k}", torch.as_tensor(v, dtype=torch.long if k == "log_cols"
                                                           else dtype))
        ts = layout.table_sum  # (weights on z, offset) of the table sum, if the table is used
        self.register_buffer("sum_w", None if ts is None else torch.as_tensor(ts[0], dtype=dtype))
        self.sum_b = 0.0 if ts is None else ts[1]

    def forward(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Expected features and table sum of relaxed architectures ``probs`` (n, onehot_width)."""
        x = probs.to(self.dtype)
        x = x[None, :] if x.dim() == 1 else x
        pos, head = self.expected(_split(self.space, x))
        n = x.shape[0]
        z = torch.cat([pos.transpose(1, 2).reshape(n, -1), head], dim=1)  # the layout's z
        enc = x if self.layout.encoding_width else None
        weights = {k: getattr(self, f"w_{k}") for k in self._keys}
        feats = combine(enc, z, weights, lambda cols: torch.cat(cols, dim=1), torch.log)
        table_sum = None if self.sum_w is None else z @ self.sum_w + self.sum_b
        return feats, table_sum


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
