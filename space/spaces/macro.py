"""NAS-Bench-Macro (CIFAR-10).

Keys are 8 digits, one per layer: 0 identity (a 1x1 conv + BN where stride or
width changes), 1 MBConv e3 k3, 2 MBConv e6 k5 (ReLU, no SE). Stem 3x3 stride 1,
32 channels; stages of [2, 3, 3] layers whose first layer has stride 2 and doubles
the width (64, 128, 256); head 1x1 conv to 1280, pool, FC 10; 32x32 input.

Of 6,561 keys, 3,969 are distinct networks: an identity that is not the first layer
of its stage computes nothing and is equivalent to one moved to the stage's end.
The builder reproduces the benchmark's ``params`` and ``flops`` of every key.
"""
from __future__ import annotations

from typing import Sequence

from ..arch import Block
from .base import Decision, SearchSpace

STAGES = (2, 3, 3)
WIDTHS = (64, 64, 128, 128, 128, 256, 256, 256)
STRIDES = (2, 1, 2, 1, 1, 2, 1, 1)
CHOICES = ("identity", "mb_e3_k3", "mb_e6_k5")


class MacroSpace(SearchSpace):
    """NAS-Bench-Macro: 8 layers x 3 choices, canonicalised."""

    name = "nasbench-macro"
    description = "NAS-Bench-Macro CIFAR-10 space (8 layers x {identity, MB e3k3, MB e6k5})"
    arch_defaults = {"resolution": 32, "stem_ch": 32, "stem_stride": 1, "head_ch": 1280,
                     "num_classes": 10, "act": "relu", "expand_divisor": 1}
    positions = tuple((Decision(f"layer{i}", CHOICES),) for i in range(8))

    def _make_block(self, pos: int, sub: tuple[int, ...], in_ch: int) -> Block:
        c, s = WIDTHS[pos], STRIDES[pos]
        if sub[0] == 0:
            return Block(1, 1, s, 1, in_ch, c, op="skip")
        if sub[0] == 1:
            return Block(1, 3, s, 3, in_ch, c)
        return Block(1, 5, s, 6, in_ch, c)

    def canonical(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Canonical indices: identity layers moved to the end of their stage."""
        vals = list(self.check_indices(idx))
        start = 0
        for n in STAGES:
            first, rest = vals[start], vals[start + 1: start + n]
            kept = [v for v in rest if v != 0]
            vals[start: start + n] = [first] + kept + [0] * (len(rest) - len(kept))
            start += n
        return tuple(vals)

    def from_key(self, key: str) -> tuple[int, ...]:
        """Index vector of a benchmark key such as ``'02012100'``."""
        if not isinstance(key, str) or len(key) != 8 or any(ch not in "012" for ch in key):
            raise ValueError(f"nasbench-macro key must be 8 digits from 0/1/2, got {key!r}")
        return tuple(int(ch) for ch in key)

    def to_key(self, idx: Sequence[int]) -> str:
        """Benchmark key of an index vector (as given, not canonicalised)."""
        return "".join(str(v) for v in self.check_indices(idx))
