"""Architectures: frozen, hashable descriptions of MBConv-family networks.

An :class:`Arch` is input resolution + stem + stages (:class:`Block`) + head. A
:class:`Block` is one line of the authors' release, e.g.
``r2_k3_s22_e6_i16_o24_se0.25_noskip``. The canonical text form is printed here
(``str(block)``, ``str(arch)``, :func:`format_block`, :func:`format_arch`, from the
token tables below); :mod:`space.blockstring` parses it with the same tables, so
this module is the base of the package and imports nothing from it.
:meth:`Arch.layers` expands the stages into per-layer operator configurations
(:class:`LayerConfig`), the unit that latency tables measure.

Layer semantics (authors' release, extended):

* ``mbconv`` (default): 1x1 expand (only when e != 1) + BN + act; depthwise kxk +
  BN + act; SE; 1x1 project + BN (linear). e1 is the paper's depthwise-separable
  conv.
* ``irf``: FBNet's inverted residual: like ``mbconv`` but the 1x1 expansion conv is
  present even at e1; with ``g2`` both 1x1 convs are grouped and a channel shuffle
  follows the first one.
* ``conv``: the paper's regular conv: kxk conv in->out + BN + act (+ SE); e must be 1.
* ``skip``: a layer that is the identity, or a 1x1 conv + BN where stride or width
  changes (NAS-Bench-Macro and FBNet "skip").

SE: reduced width ``max(1, int(in_ch * se))`` (ratio of the block *input* width),
``sigmoid(expand(act(reduce(avgpool(x))))) * x`` with biased 1x1 convs.
SkipOp: ``identity`` adds the input when stride 1 and in == out; ``none`` never;
``pool`` also bridges the first layer of a stage: average-pool by the stride and,
when the width changes, a 1x1 conv + BN on the shortcut.

Extensions (every default reproduces the forms above):

* ``fused`` (EfficientNet-EdgeTPU / EfficientNetV2 fused-MBConv): kxk conv
  in->mid with the stride + BN + act; SE; 1x1 project + BN (linear). ``fused`` at e1
  without an explicit expanded width is a single kxk conv in->out + BN + act (+ SE).
  ``fusedp`` is pytorchcv's ``EffiEdgeResUnit``: the same, but the kxk conv has
  stride 1 and the stride sits on the 1x1 projection (at e1 the kxk conv keeps the
  input width).
* explicit expanded width ``m<mid>`` (MobileNetV3's "exp size"): the expanded width
  of every layer of the block is ``mid`` instead of ``in * e``; ``e`` must then be
  ``round(mid / in)`` (clipped to 1..12), a descriptor only.
* per-block activation (``relu``, ``relu6``, ``silu``, ``hswish``) overriding the
  network's activation for that block's layers (SE keeps its own inner act, below).
* SE variant: ``sem`` squeezes the expanded width (default: the block input width),
  ``sed<d>`` rounds the squeeze with :func:`make_divisible` (default ``max(1, int(.))``),
  ``sehs`` gates with a hard sigmoid ``relu6(x + 3) / 6`` (default sigmoid), ``se<act>``
  (``serelu`` ...) fixes the inner activation (default: the layer's). MobileNetV3's SE
  is ``se0.25_sem_sed8_sehs_serelu``.
* MobileNetV3 head: after the head 1x1 conv and the global pool, a 1x1 "mix" conv to
  ``mix_ch`` channels + act, with a bias (TF-slim, default), with BN (``mixbn``) or with
  neither (``mixplain``: pytorchcv and Once-for-All), then the classifier;
  ``nofcbias`` drops the classifier's bias (pytorchcv MobileNetV2/V3).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .textform import (HEADER_FLAGS, HEADER_TOKENS, OP_TOKENS, OPS, SE_TOKENS,  # noqa: F401
                       SKIP_TOKENS, format_arch, format_block)
from .widths import (MAX_EXPAND, WIDTH_RULES, expand_for, make_divisible, round_width,  # noqa: F401
                     scale_width, squeeze_width)

SKIPS = ("identity", "none", "pool")
ACTS = ("relu", "relu6", "silu", "hswish")
SE_BASES = ("in", "mid")      # what the SE ratio multiplies: block input or expanded width
SE_GATES = ("sigmoid", "hsigmoid")
MIX_NORMS = ("bias", "bn", "none")  # the MobileNetV3 head's mix conv: bias, BN, or neither
EXPANDING_OPS = ("mbconv", "irf", "fused", "fusedp")  # ops with an expanded (mid) width
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def _check_choice(name: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv with 'same'-style padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class Block:
    """One stage: ``repeats`` layers sharing op, kernel, expansion, SE and skip.

    The first layer takes ``stride`` and ``in_ch -> out_ch``; repeats are stride 1
    with ``out_ch -> out_ch``.
    """

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int
    se: float = 0.0
    skip: str = "identity"
    op: str = "mbconv"
    groups: int = 1
    mid_ch: int = 0          # explicit expanded width (0: in * expand)
    act: str = ""            # per-block activation ("": the network's)
    se_base: str = "in"
    se_div: int = 1
    se_gate: str = "sigmoid"
    se_act: str = ""         # SE inner activation ("": the layer's)

    def __post_init__(self) -> None:
        _check_int("repeats", self.repeats, 1, 64)
        _check_choice("kernel", self.kernel, KERNELS)
        _check_choice("stride", self.stride, STRIDES)
        _check_int("expand", self.expand, 1, MAX_EXPAND)
        _check_int("in_ch", self.in_ch, 1)
        _check_int("out_ch", self.out_ch, 1)
        if isinstance(self.se, bool) or not isinstance(self.se, (int, float)):
            raise ValueError(f"se must be a number in [0, 1], got {self.se!r}")
        if not (0.0 <= float(self.se) <= 1.0) or math.isnan(float(self.se)):
            raise ValueError(f"se must be in [0, 1], got {self.se}")
        object.__setattr__(self, "se", float(self.se))
        _check_choice("skip", self.skip, SKIPS)
        _check_choice("op", self.op, OPS)
        _check_int("groups", self.groups, 1, 8)
        if self.op == "conv" and self.expand != 1:
            raise ValueError(f"op 'conv' (regular conv) takes expand 1, got e{self.expand}")
        if self.op == "skip" and (self.expand != 1 or self.se or self.groups != 1):
            raise ValueError("op 'skip' takes e1, no se and no groups")
        if self.groups > 1 and self.op != "irf":
            raise ValueError(f"groups g{self.groups} need op 'irf' (FBNet grouped 1x1 convs)")
        if self.groups > 1:
            mid = self.mid_ch or self.in_ch * self.expand
            for what, c in (("in_ch", self.in_ch), ("expanded width", mid), ("out_ch", self.out_ch)):
                if c % self.groups:
                    raise ValueError(f"{what} {c} is not divisible by groups {self.groups}")
        _check_int("mid_ch", self.mid_ch, 0)
        if self.mid_ch:
            if self.op not in EXPANDING_OPS:
                raise ValueError(f"an explicit expanded width m{self.mid_ch} needs op "
                                 f"{', '.join(EXPANDING_OPS)}; got {self.op!r}")
            want = expand_for(self.mid_ch, self.in_ch)
            if self.expand != want:
                raise ValueError(f"with m{self.mid_ch} and i{self.in_ch} the expansion token must be "
                                 f"e{want} (round(mid / in)); got e{self.expand}")
        if self.op in ("fused", "fusedp") and self.groups != 1:
            raise ValueError(f"op {self.op!r} takes no groups")
        if self.act:
            _check_choice("block activation", self.act, ACTS)
        _check_choice("se_base", self.se_base, SE_BASES)
        _check_int("se_div", self.se_div, 1, 64)
        _check_choice("se_gate", self.se_gate, SE_GATES)
        if self.se_act:
            _check_choice("SE inner activation", self.se_act, ACTS)
        if not self.se and (self.se_base != "in" or self.se_div != 1 or self.se_gate != "sigmoid"
                            or self.se_act):
            raise ValueError("SE options (sem, sed<d>, sehs, se<act>) need an SE ratio se<r> > 0")

    def replace(self, **changes) -> "Block":
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        return format_block(self)


@dataclass(frozen=True)
class LayerConfig:
    """One layer with its input/output geometry: the key of a latency table row."""

    op: str
    h: int
    w: int
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    expand: int
    se: float
    skip: str
    groups: int
    act: str
    expand_divisor: int = 1
    num_classes: int = 0
    mid: int = 0             # explicit expanded width (0: derived from in * expand)
    se_base: str = "in"
    se_div: int = 1
    se_gate: str = "sigmoid"
    se_act: str = ""
    mix_ch: int = 0          # head only: the MobileNetV3 mix conv after the pool
    mix_norm: str = "bias"
    fc_bias: bool = True

    @property
    def out_h(self) -> int:
        """Output height (1 for the head)."""
        if self.op == "head":
            return 1
        return conv_out(self.h, self.kernel, self.stride)

    @property
    def out_w(self) -> int:
        """Output width (1 for the head)."""
        if self.op == "head":
            return 1
        return conv_out(self.w, self.kernel, self.stride)

    @property
    def mid_ch(self) -> int:
        """Width after the expansion (``in_ch`` when there is none)."""
        if self.op not in EXPANDING_OPS:
            return self.in_ch
        if self.mid:
            return self.mid
        if self.is_single_conv:
            return self.in_ch
        mid = self.in_ch * self.expand
        if self.expand_divisor > 1:
            mid = make_divisible(mid, self.expand_divisor)
        return mid

    @property
    def is_single_conv(self) -> bool:
        """A ``fused`` layer at e1 without explicit width: one kxk conv in->out."""
        return self.op == "fused" and self.expand == 1 and not self.mid

    @property
    def has_expand(self) -> bool:
        """Whether the layer has a 1x1 expansion conv."""
        return self.op == "irf" or (self.op == "mbconv" and self.mid_ch != self.in_ch)

    @property
    def se_width(self) -> int:
        """Channels the SE gates: the expanded width, or the output for conv-like layers."""
        if self.op == "conv" or self.is_single_conv:
            return self.out_ch
        return self.mid_ch

    @property
    def se_ch(self) -> int:
        """Squeeze-and-excitation bottleneck width (0 without SE)."""
        if self.se <= 0:
            return 0
        base = self.in_ch if self.se_base == "in" else self.se_width
        return squeeze_width(base, self.se, self.se_div)

    @property
    def se_inner_act(self) -> str:
        """Activation inside the SE bottleneck."""
        return self.se_act or self.act

    @property
    def residual(self) -> str:
        """'add' (identity residual), 'pool' (pooled/projected shortcut) or 'none'."""
        if self.op not in ("mbconv", "irf", "conv", "fused", "fusedp"):
            return "none"
        same = self.stride == 1 and self.in_ch == self.out_ch
        if self.skip == "identity":
            return "add" if same else "none"
        if self.skip == "pool":
            return "add" if same else "pool"
        return "none"

    @property
    def is_identity(self) -> bool:
        """A ``skip`` layer that computes nothing."""
        return self.op == "skip" and self.stride == 1 and self.in_ch == self.out_ch

    def key(self) -> str:
        """Stable text key, used as the op id in latency tables.

        Two configurations that compute the same thing get the same key (the skip
        choice enters only through the residual it produces).
        """
        parts = [
            self.op,
            f"i{self.h}x{self.w}x{self.in_ch}",
            f"o{self.out_h}x{self.out_w}x{self.out_ch}",
            f"k{self.kernel}",
            f"s{self.stride}",
        ]
        if self.op in ("mbconv", "irf", "conv", "fused", "fusedp"):
            parts += [f"e{self.expand}", f"se{self.se:g}", f"res-{self.residual}",
                      f"g{self.groups}"]
        parts.append(self.act)
        if self.expand_divisor != 1 and self.op in ("mbconv", "irf"):
            parts.append(f"div{self.expand_divisor}")
        if self.op == "head":
            parts.append(f"cls{self.num_classes}")
            if self.mix_ch:
                parts.append(f"mix{self.mix_ch}-{self.mix_norm}")
            if not self.fc_bias:
                parts.append("nofcbias")
            return "_".join(parts)
        # issue-L extensions: only where they differ from the defaults (old keys unchanged)
        if self.mid:
            parts.append(f"m{self.mid}")
        if self.se > 0:
            if self.se_base != "in":
                parts.append("sem")
            if self.se_div != 1:
                parts.append(f"sed{self.se_div}")
            if self.se_gate != "sigmoid":
                parts.append("sehs")
            if self.se_act and self.se_act != self.act:
                parts.append(f"se{self.se_act}")
        if self.expand_divisor != 1 and self.op in ("fused", "fusedp"):
            parts.append(f"div{self.expand_divisor}")
        return "_".join(parts)


@dataclass(frozen=True)
class Arch:
    """A whole network: resolution, stem, stages, head (all frozen and hashable).

    ``expand_divisor`` rounds expanded widths to a multiple (8 in torchvision's
    EfficientNet, 1 in MnasNet). ``head_ch`` 0 means no 1x1 head conv.
    """

    blocks: tuple[Block, ...]
    resolution: int = 224
    stem_ch: int = 32
    stem_kernel: int = 3
    stem_stride: int = 2
    head_ch: int = 1280
    num_classes: int = 1000
    act: str = "relu"
    expand_divisor: int = 1
    dropout: float = 0.2
    in_ch: int = 3
    mix_ch: int = 0
    mix_norm: str = "bias"
    fc_bias: bool = True
    name: str | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.blocks, list):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise ValueError("an Arch needs a non-empty tuple of Blocks")
        for b in self.blocks:
            if not isinstance(b, Block):
                raise ValueError(f"blocks must hold Block objects, got {type(b).__name__}")
        _check_int("resolution", self.resolution, 8, 4096)
        _check_int("stem_ch", self.stem_ch, 1)
        _check_choice("stem_kernel", self.stem_kernel, KERNELS)
        _check_choice("stem_stride", self.stem_stride, STRIDES)
        _check_int("head_ch", self.head_ch, 0)
        _check_int("num_classes", self.num_classes, 1)
        _check_choice("act", self.act, ACTS)
        _check_int("expand_divisor", self.expand_divisor, 1, 64)
        _check_int("in_ch", self.in_ch, 1, 16)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "dropout", float(self.dropout))
        _check_int("mix_ch", self.mix_ch, 0)
        _check_choice("mix_norm", self.mix_norm, MIX_NORMS)
        if not self.mix_ch and self.mix_norm != "bias":
            raise ValueError(f"mix_norm {self.mix_norm!r} needs a mix conv (mix<channels>)")
        if not isinstance(self.fc_bias, bool):
            raise ValueError(f"fc_bias must be True or False, got {self.fc_bias!r}")
        # a block activation equal to the network's is the default (canonical form)
        if any(b.act == self.act for b in self.blocks):
            object.__setattr__(self, "blocks", tuple(b.replace(act="") if b.act == self.act else b
                                                     for b in self.blocks))
        prev = self.stem_ch
        for i, b in enumerate(self.blocks):
            if b.in_ch != prev:
                raise ValueError(
                    f"block {i} ({b}) takes in_ch {b.in_ch} but the previous stage gives {prev}"
                )
            prev = b.out_ch
        if self.feature_size() < 1:
            raise ValueError(f"resolution {self.resolution} is too small for this network")

    # -- derived -----------------------------------------------------------------
    @property
    def last_ch(self) -> int:
        """Channels entering the classifier."""
        if self.mix_ch:
            return self.mix_ch
        return self.head_ch if self.head_ch else self.blocks[-1].out_ch

    @property
    def pooled_ch(self) -> int:
        """Channels at the global pool (before the mix conv, if any)."""
        return self.head_ch if self.head_ch else self.blocks[-1].out_ch

    def feature_size(self) -> int:
        """Spatial size of the last feature map."""
        return self.layers()[-1].out_h

    def stem_out(self) -> int:
        """Spatial size after the stem."""
        return conv_out(self.resolution, self.stem_kernel, self.stem_stride)

    def layers(self) -> tuple[LayerConfig, ...]:
        """Per-layer operator configurations, stage by stage."""
        return _expand_layers(self)

    def stem_config(self) -> LayerConfig:
        """The stem conv as an operator configuration (``op='stem'``)."""
        r = self.resolution
        return LayerConfig(op="stem", h=r, w=r, in_ch=self.in_ch, out_ch=self.stem_ch,
                           kernel=self.stem_kernel, stride=self.stem_stride, expand=1, se=0.0,
                           skip="none", groups=1, act=self.act)

    def head_config(self) -> LayerConfig:
        """Head conv + pool + classifier as one configuration (``op='head'``)."""
        last = self.layers()[-1]
        return LayerConfig(op="head", h=last.out_h, w=last.out_w, in_ch=last.out_ch,
                           out_ch=self.head_ch, kernel=1, stride=1, expand=1, se=0.0,
                           skip="none", groups=1, act=self.act, num_classes=self.num_classes,
                           mix_ch=self.mix_ch, mix_norm=self.mix_norm, fc_bias=self.fc_bias)

    def ops(self) -> tuple[LayerConfig, ...]:
        """Stem, every layer, head: what a latency table sums over."""
        return (self.stem_config(), *self.layers(), self.head_config())

    def stage_layers(self) -> tuple[tuple[LayerConfig, ...], ...]:
        """Per-layer configurations grouped by stage."""
        out, i = [], 0
        flat = self.layers()
        for b in self.blocks:
            out.append(flat[i : i + b.repeats])
            i += b.repeats
        return tuple(out)

    def replace(self, **changes) -> "Arch":
        """A copy with fields changed (validated again); never mutates ``self``."""
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        return format_arch(self)


def _expand_layers(arch: Arch) -> tuple[LayerConfig, ...]:
    size = arch.stem_out()
    layers = []
    for b in arch.blocks:
        cin = b.in_ch
        for r in range(b.repeats):
            stride = b.stride if r == 0 else 1
            lc = LayerConfig(
                op=b.op, h=size, w=size, in_ch=cin, out_ch=b.out_ch, kernel=b.kernel,
                stride=stride, expand=b.expand, se=b.se, skip=b.skip, groups=b.groups,
                act=b.act or arch.act, expand_divisor=arch.expand_divisor,
                se_base=b.se_base, se_div=b.se_div, se_gate=b.se_gate, se_act=b.se_act,
            )
            if b.mid_ch and (b.mid_ch != lc.mid_ch or lc.is_single_conv):
                lc = dataclasses.replace(lc, mid=b.mid_ch)
            if lc.se_act and lc.se_act == lc.act:  # canonical: same computation, same key
                lc = dataclasses.replace(lc, se_act="")
            layers.append(lc)
            size = lc.out_h
            cin = b.out_ch
    return tuple(layers)
