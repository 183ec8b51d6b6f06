"""Exact parameter and multiply-add counts, analytically (no torch needed).

Conventions
-----------
``params``
    Conv/FC weights and biases plus BatchNorm gamma and beta (running statistics
    are buffers, not parameters). Equals ``sum(p.numel() for p in
    build_model(arch).parameters())``.
``madds`` (the MnasNet/MobileNet convention)
    Multiply-adds of convolutions and the classifier, SE convs included; BatchNorm,
    biases, activations, pooling and element-wise ops are free.
``macs_thop`` (the Accel-NASBench ``macs_m`` convention, the ``thop`` profiler)
    Conv multiply-adds (biases free), BatchNorm as 4 x its elements, adaptive
    average pooling as (window + 1) x outputs, Linear as in x out; activations and
    element-wise ops free. This reproduces ``macs_m`` of all 5,138 Accel-NASBench
    rows exactly (rows with SE show the bias is not counted).
"""
from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch, LayerConfig, format_block


@dataclass(frozen=True)
class Counts:
    """Exact parameter count, multiply-adds (MnasNet convention) and thop-convention MACs."""
    params: int = 0
    madds: int = 0
    macs_thop: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.params + other.params, self.madds + other.madds,
                      self.macs_thop + other.macs_thop)


ZERO = Counts()


def conv_counts(cin: int, cout: int, k: int, out_hw: int, groups: int = 1, bias: bool = False,
                bn: bool = True) -> Counts:
    """A k x k conv (+ BN) producing ``out_hw`` output positions."""
    w = cin // groups * cout * k * k
    params = w + (cout if bias else 0) + (2 * cout if bn else 0)
    madds = w * out_hw
    thop = madds + (4 * cout * out_hw if bn else 0)
    return Counts(params, madds, thop)


def se_counts(ch: int, squeeze: int, hw: int) -> Counts:
    """Squeeze-excitation on ``ch`` channels of an ``hw``-position map."""
    reduce = conv_counts(ch, squeeze, 1, 1, bias=True, bn=False)
    expand = conv_counts(squeeze, ch, 1, 1, bias=True, bn=False)
    pool = Counts(0, 0, (hw + 1) * ch)
    return reduce + expand + pool


def layer_counts(lc: LayerConfig) -> Counts:
    """Counts of one searchable layer."""
    hw_in = lc.h * lc.w
    hw_out = lc.out_h * lc.out_w
    if lc.op == "skip":
        if lc.is_identity:
            return ZERO
        return conv_counts(lc.in_ch, lc.out_ch, 1, hw_out)
    total = ZERO
    if lc.op == "conv" or lc.is_single_conv:
        total += conv_counts(lc.in_ch, lc.out_ch, lc.kernel, hw_out)
        if lc.se_ch:
            total += se_counts(lc.out_ch, lc.se_ch, hw_out)
    elif lc.op in ("fused", "fusedp"):
        mid = lc.mid_ch
        stride_on_kxk = lc.op == "fused"
        total += conv_counts(lc.in_ch, mid, lc.kernel, hw_out if stride_on_kxk else hw_in)
        if lc.se_ch:
            total += se_counts(mid, lc.se_ch, hw_out if stride_on_kxk else hw_in)
        total += conv_counts(mid, lc.out_ch, 1, hw_out)
    else:
        mid = lc.mid_ch
        if lc.has_expand:
            total += conv_counts(lc.in_ch, mid, 1, hw_in, groups=lc.groups)
        total += conv_counts(mid, mid, lc.kernel, hw_out, groups=mid)
        if lc.se_ch:
            total += se_counts(mid, lc.se_ch, hw_out)
        total += conv_counts(mid, lc.out_ch, 1, hw_out, groups=lc.groups)
    if lc.residual == "pool" and lc.in_ch != lc.out_ch:
        total += conv_counts(lc.in_ch, lc.out_ch, 1, hw_out)
    return total


def stem_counts(arch: Arch) -> Counts:
    """Counts of the stem conv + BN of ``arch``."""
    s = arch.stem_out()
    return conv_counts(arch.in_ch, arch.stem_ch, arch.stem_kernel, s * s)


def head_counts(arch: Arch) -> Counts:
    """Head 1x1 conv (if any), global pool and classifier."""
    last = arch.layers()[-1]
    hw = last.out_h * last.out_w
    total = ZERO
    if arch.head_ch:
        total += conv_counts(last.out_ch, arch.head_ch, 1, hw)
    p = arch.pooled_ch
    total += Counts(0, 0, (hw + 1) * p)
    if arch.mix_ch:
        total += conv_counts(p, arch.mix_ch, 1, 1, bias=arch.mix_norm == "bias",
                             bn=arch.mix_norm == "bn")
    c = arch.last_ch
    bias = arch.num_classes if arch.fc_bias else 0
    total += Counts(c * arch.num_classes + bias, c * arch.num_classes, c * arch.num_classes)
    return total


def count(arch: Arch) -> Counts:
    """Whole-network counts."""
    total = stem_counts(arch) + head_counts(arch)
    for lc in arch.layers():
        total += layer_counts(lc)
    return total


def count_params(arch: Arch) -> int:
    """Number of parameters (see module docstring for the convention)."""
    return count(arch).params


def count_madds(arch: Arch) -> int:
    """Multiply-adds in the MnasNet convention."""
    return count(arch).madds


def stage_table(arch: Arch) -> list[dict]:
    """Per-stage rows: block string, layers, input/output size, params, MAdds."""
    rows = []
    s = arch.stem_out()
    c = stem_counts(arch)
    rows.append({"stage": "stem", "block": f"conv{arch.stem_kernel}x{arch.stem_kernel}"
                 f" s{arch.stem_stride} {arch.in_ch}->{arch.stem_ch}",
                 "input": f"{arch.resolution}x{arch.resolution}x{arch.in_ch}",
                 "output": f"{s}x{s}x{arch.stem_ch}", "params": c.params, "madds": c.madds})
    for i, (b, lcs) in enumerate(zip(arch.blocks, arch.stage_layers())):
        c = ZERO
        for lc in lcs:
            c += layer_counts(lc)
        first, last = lcs[0], lcs[-1]
        rows.append({"stage": str(i + 1), "block": format_block(b),
                     "input": f"{first.h}x{first.w}x{first.in_ch}",
                     "output": f"{last.out_h}x{last.out_w}x{last.out_ch}",
                     "params": c.params, "madds": c.madds})
    c = head_counts(arch)
    last = arch.layers()[-1]
    mix = f", conv1x1 ->{arch.mix_ch}" if arch.mix_ch else ""
    rows.append({"stage": "head", "block": f"conv1x1 ->{arch.head_ch}, pool{mix}, fc {arch.num_classes}"
                 if arch.head_ch else f"pool{mix}, fc {arch.num_classes}",
                 "input": f"{last.out_h}x{last.out_w}x{last.out_ch}",
                 "output": f"{arch.num_classes}", "params": c.params, "madds": c.madds})
    return rows
