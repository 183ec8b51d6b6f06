"""The Accel-NASBench space (MnasNet / EfficientNet-B0 skeleton).

Stem 3x3 s2 32; 7 blocks with strides [1,2,2,2,1,2,1], widths
[32,16,24,40,80,112,192] -> [16,24,40,80,112,192,320]; per block expansion
{1,4,6}, kernel {3,5}, layers {1,2,3} ({1,2,3,4} for block5, 0-based: the 4-layer stage of B0), SE on/off; SiLU;
expanded widths rounded to a multiple of 8; head 1x1 conv to 1280, pool, FC 1000.
The builder reproduces ``params_m`` and ``macs_m`` (thop convention) of every row
of ``anb_results.csv`` exactly.
"""
from __future__ import annotations

from typing import Mapping

from ..arch import Arch, Block
from .base import Decision, SearchSpace

STRIDES = (1, 2, 2, 2, 1, 2, 1)
IN_CH = (32, 16, 24, 40, 80, 112, 192)
OUT_CH = (16, 24, 40, 80, 112, 192, 320)
EXPANSIONS = (1, 4, 6)
KERNELS = (3, 5)
SE = (0, 1)


def _layers(i: int) -> tuple[int, ...]:
    return (1, 2, 3, 4) if i == 5 else (1, 2, 3)


class AnbSpace(SearchSpace):
    """Accel-NASBench: 28 decisions (e, k, l, se for each of 7 blocks)."""

    name = "anb"
    description = "Accel-NASBench MnasNet/EfficientNet-B0 skeleton (e, k, layers, SE per block)"
    arch_defaults = {"resolution": 224, "stem_ch": 32, "head_ch": 1280, "num_classes": 1000,
                     "act": "silu", "expand_divisor": 8}
    positions = tuple(
        (Decision(f"block{i}_e", EXPANSIONS), Decision(f"block{i}_k", KERNELS),
         Decision(f"block{i}_l", _layers(i)), Decision(f"block{i}_se", SE))
        for i in range(7)
    )

    def _make_block(self, pos: int, sub: tuple[int, ...], in_ch: int) -> Block | None:
        e_i, k_i, l_i, se_i = sub
        return Block(repeats=_layers(pos)[l_i], kernel=KERNELS[k_i], stride=STRIDES[pos],
                     expand=EXPANSIONS[e_i], in_ch=in_ch, out_ch=OUT_CH[pos],
                     se=0.25 if SE[se_i] else 0.0)

    def from_row(self, row: Mapping[str, object]) -> tuple[int, ...]:
        """Index vector of an ``anb_results.csv`` row (``block{i}_{e,k,l,se}`` columns)."""
        out = []
        for d in self.decisions:
            if d.name not in row:
                raise ValueError(f"anb row lacks column {d.name!r}")
            try:
                v = int(float(row[d.name]))
            except (TypeError, ValueError):
                raise ValueError(f"anb row column {d.name!r}: expected an integer, "
                                 f"got {row[d.name]!r}") from None
            if v not in d.choices:
                raise ValueError(f"anb row column {d.name!r}: {v} not in {list(d.choices)}")
            out.append(d.choices.index(v))
        return tuple(out)

    def row_arch(self, row: Mapping[str, object]) -> Arch:
        """The network of an ``anb_results.csv`` row."""
        return self.to_arch(self.from_row(row))
