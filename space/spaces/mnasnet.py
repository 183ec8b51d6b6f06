"""The MnasNet factorized hierarchical search space (paper Sec. 4.1).

Seven blocks at MobileNetV2's resolutions and strides. Per block, shared by all its
layers: ConvOp (regular conv, depthwise-separable conv = MBConv e1, MBConv e3,
MBConv e6), kernel 3/5, SE ratio 0/0.25, SkipOp (identity, none, pool), output
width, and layer count (MobileNetV2's count -1/0/+1; a block with 0 layers is left
out). About 432 sub-spaces per block (times widths and layers).

Widths are configurable. ``mnasnet-paper`` uses the paper's grid
{0.75, 1.0, 1.25} x MobileNetV2's width. MnasNet-A1 (block 5 = 112) and B1
(block 6 = 192) each sit one step off that grid; ``mnasnet`` (the default, whose
latency tables ship) adds those two widths so both reference networks are members.
"""
from __future__ import annotations

from typing import Sequence

from ..arch import Block
from .base import Decision, SearchSpace, _residuals

#: MobileNetV2's stages: (expansion, width, layers, stride)
MBV2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
CONV_OPS = ("conv", "dsconv", "mbconv3", "mbconv6")
KERNELS = (3, 5)
SE_RATIOS = (0.0, 0.25)
SKIP_OPS = ("identity", "none", "pool")
WIDTH_FACTORS = (0.75, 1.0, 1.25)
EXTRA_WIDTHS = {4: (112,), 5: (192,)}  # 0-based block index -> widths of A1 / B1


class MnasNetSpace(SearchSpace):
    """The paper's 7-block space; ``widths`` per block are configurable."""

    arch_defaults = {"resolution": 224, "stem_ch": 32, "head_ch": 1280, "num_classes": 1000,
                     "act": "relu", "expand_divisor": 1}

    def __init__(self, widths: Sequence[Sequence[int]] | None = None,
                 extra_widths: dict[int, Sequence[int]] | None = None,
                 name: str = "mnasnet"):
        if widths is None:
            widths = [sorted({int(round(f * c)) for f in WIDTH_FACTORS}) for _, c, _, _ in MBV2_STAGES]
        widths = [list(w) for w in widths]
        if len(widths) != 7:
            raise ValueError(f"widths must list choices for 7 blocks, got {len(widths)}")
        for i, extra in (extra_widths or {}).items():
            if not 0 <= i < 7:
                raise ValueError(f"extra_widths block index must be 0..6, got {i}")
            widths[i] = sorted(set(widths[i]) | set(extra))
        for i, w in enumerate(widths):
            if not w or any(not isinstance(c, int) or c < 1 for c in w):
                raise ValueError(f"block {i + 1} widths must be positive integers, got {w}")
        self.name = name
        self.widths = tuple(tuple(w) for w in widths)
        self.description = ("MnasNet factorized hierarchical space (7 blocks; op, kernel, SE, "
                            "skip, width, layers per block)")
        pos = []
        for i, (_, c, n, s) in enumerate(MBV2_STAGES):
            layers = tuple(x for x in (n - 1, n, n + 1) if x >= 0)
            pos.append((
                Decision(f"b{i + 1}_op", CONV_OPS),
                Decision(f"b{i + 1}_kernel", KERNELS),
                Decision(f"b{i + 1}_se", SE_RATIOS),
                Decision(f"b{i + 1}_skip", SKIP_OPS),
                Decision(f"b{i + 1}_width", self.widths[i]),
                Decision(f"b{i + 1}_layers", layers),
            ))
        self.positions = tuple(pos)

    def _make_block(self, pos: int, sub: tuple[int, ...], in_ch: int) -> Block | None:
        op_i, k_i, se_i, skip_i, w_i, n_i = sub
        d = self.positions[pos]
        n = d[5].choices[n_i]
        if n == 0:
            return None
        op = CONV_OPS[op_i]
        kind, expand = {"conv": ("conv", 1), "dsconv": ("mbconv", 1),
                        "mbconv3": ("mbconv", 3), "mbconv6": ("mbconv", 6)}[op]
        return Block(repeats=n, kernel=KERNELS[k_i], stride=MBV2_STAGES[pos][3], expand=expand,
                     in_ch=in_ch, out_ch=d[4].choices[w_i], se=SE_RATIOS[se_i],
                     skip=SKIP_OPS[skip_i], op=kind)

    def canonical(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Blocks with 0 layers get all-zero choices; a skip choice that changes
        nothing (e.g. identity vs none for a single stride-2 layer) becomes the
        first equivalent one."""
        vals = list(self.check_indices(idx))
        cin = self.arch_defaults["stem_ch"]
        o = 0
        for p, pos in enumerate(self.positions):
            sub = vals[o: o + len(pos)]
            b = self._make_block(p, tuple(sub), cin)
            if b is None:
                vals[o: o + 5] = [0] * 5
                nl = pos[5].choices.index(0)
                vals[o + 5] = nl
            else:
                res = _residuals(b)
                for j, sk in enumerate(SKIP_OPS):
                    if _residuals(b.replace(skip=sk)) == res:
                        vals[o + 3] = j
                        break
                cin = b.out_ch
            o += len(pos)
        return tuple(vals)


def mnasnet_space() -> MnasNetSpace:
    """The default space: the paper's grid plus the widths of A1 and B1."""
    return MnasNetSpace(extra_widths=EXTRA_WIDTHS, name="mnasnet")


def mnasnet_paper_space() -> MnasNetSpace:
    """The paper's width grid exactly (A1 and B1 are not members)."""
    return MnasNetSpace(name="mnasnet-paper")
