"""The HW-NAS-Bench / HELP FBNet space, CIFAR-100 variant.

22 searchable layers, each one of ``k3_e1, k3_e1_g2, k3_e3, k3_e6, k5_e1, k5_e1_g2,
k5_e3, k5_e6, skip``. Layers are FBNet inverted residuals (``irf``: the 1x1
expansion is present even at e1; ``g2`` groups both 1x1 convs and shuffles the
channels after the first). ``skip`` is the identity, or a 1x1 conv + BN where
stride or width changes. 32x32 input; stem 3x3 stride 1, 16 channels; stages of
[1,4,4,4,4,4,1] layers with widths [16,24,32,64,112,184,352] and strides
[1,1,2,2,1,2,1]; head 1x1 conv to 1504, pool, FC 100.

Identity layers inside a stage compute nothing, so the canonical form moves them to
the end of their stage (the stage's first layer, which may change stride or width,
stays in place).
"""
from __future__ import annotations

from typing import Sequence

from ..arch import Block
from .base import Decision, SearchSpace

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_WIDTHS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
SKIP = OPS.index("skip")


def _layout() -> list[tuple[int, int, int, bool]]:
    """(stage, width, stride, first_in_stage) for the 22 layers."""
    out = []
    for s, (n, w, st) in enumerate(zip(STAGE_LAYERS, STAGE_WIDTHS, STAGE_STRIDES)):
        for j in range(n):
            out.append((s, w, st if j == 0 else 1, j == 0))
    return out


LAYOUT = _layout()


class FBNetSpace(SearchSpace):
    """22 layers x 9 ops (HELP's ``layer0..layer21`` columns)."""

    name = "fbnet"
    description = "HW-NAS-Bench/HELP FBNet space, CIFAR-100 (22 layers x 9 ops)"
    arch_defaults = {"resolution": 32, "stem_ch": 16, "stem_stride": 1, "head_ch": 1504,
                     "num_classes": 100, "act": "relu", "expand_divisor": 1}
    positions = tuple((Decision(f"layer{i}", OPS),) for i in range(len(LAYOUT)))

    def _make_block(self, pos: int, sub: tuple[int, ...], in_ch: int) -> Block:
        _, width, stride, _ = LAYOUT[pos]
        op = OPS[sub[0]]
        if op == "skip":
            return Block(1, 1, stride, 1, in_ch, width, op="skip")
        k, e = int(op[1]), int(op.split("_")[1][1:])
        g = 2 if op.endswith("_g2") else 1
        return Block(1, k, stride, e, in_ch, width, op="irf", groups=g)

    def canonical(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Canonical indices: identity layers moved to the end of their stage."""
        vals = list(self.check_indices(idx))
        start = 0
        for n in STAGE_LAYERS:
            first, rest = vals[start], vals[start + 1: start + n]
            kept = [v for v in rest if v != SKIP]
            vals[start: start + n] = [first] + kept + [SKIP] * (len(rest) - len(kept))
            start += n
        return tuple(vals)

    def from_ops(self, ops: Sequence[str]) -> tuple[int, ...]:
        """Index vector from 22 op names (e.g. a row of ``fbnet_latency.csv``)."""
        if len(ops) != len(LAYOUT):
            raise ValueError(f"fbnet: expected {len(LAYOUT)} layer ops, got {len(ops)}")
        out = []
        for i, o in enumerate(ops):
            if o not in OPS:
                raise ValueError(f"fbnet: layer{i} op {o!r} not one of {', '.join(OPS)}")
            out.append(OPS.index(o))
        return tuple(out)
