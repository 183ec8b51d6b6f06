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
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

OPS = ("mbconv", "irf", "conv", "skip")
SKIPS = ("identity", "none", "pool")
ACTS = ("relu", "relu6", "silu", "hswish")
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
MAX_EXPAND = 12


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


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% down.

    The rounding of the MnasNet/MobileNetV2/EfficientNet releases:
    ``max(divisor, int(v + divisor/2) // divisor * divisor)``, plus ``divisor`` when
    that falls below ``0.9 * v``.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


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
            mid = self.in_ch * self.expand
            for what, c in (("in_ch", self.in_ch), ("expanded width", mid), ("out_ch", self.out_ch)):
                if c % self.groups:
                    raise ValueError(f"{what} {c} is not divisible by groups {self.groups}")

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
        """Width after the 1x1 expansion (``in_ch`` when there is none)."""
        if self.op not in ("mbconv", "irf"):
            return self.in_ch
        mid = self.in_ch * self.expand
        if self.expand_divisor > 1:
            mid = make_divisible(mid, self.expand_divisor)
        return mid

    @property
    def has_expand(self) -> bool:
        """Whether the layer has a 1x1 expansion conv."""
        return self.op == "irf" or (self.op == "mbconv" and self.mid_ch != self.in_ch)

    @property
    def se_ch(self) -> int:
        """Squeeze-and-excitation bottleneck width (0 without SE)."""
        return max(1, int(self.in_ch * self.se)) if self.se > 0 else 0

    @property
    def residual(self) -> str:
        """'add' (identity residual), 'pool' (pooled/projected shortcut) or 'none'."""
        if self.op not in ("mbconv", "irf", "conv"):
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
        if self.op in ("mbconv", "irf", "conv"):
            parts += [f"e{self.expand}", f"se{self.se:g}", f"res-{self.residual}",
                      f"g{self.groups}"]
        parts.append(self.act)
        if self.expand_divisor != 1 and self.op in ("mbconv", "irf"):
            parts.append(f"div{self.expand_divisor}")
        if self.op == "head":
            parts.append(f"cls{self.num_classes}")
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
                           skip="none", groups=1, act=self.act, num_classes=self.num_classes)

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


# -- text form: the token tables shared by printing (here) and parsing (blockstring) --
SKIP_TOKENS = {"none": "noskip", "pool": "poolskip"}  # Block.skip -> token; identity: no token
OP_TOKENS = tuple(op for op in OPS if op != "mbconv")  # printed as themselves; mbconv: no token
# Architecture header, in canonical order: (Arch field, token, kind); the activation
# has no token (its value is the token). Defaults are the Arch field defaults.
HEADER_TOKENS = (
    ("resolution", "res", int), ("stem_ch", "stem", int), ("stem_kernel", "stemk", int),
    ("stem_stride", "stems", int), ("head_ch", "head", int), ("num_classes", "cls", int),
    ("act", None, str), ("expand_divisor", "div", int), ("dropout", "drop", float),
    ("in_ch", "in", int),
)


def _header_default(field_name: str) -> object:
    """Default of an :class:`Arch` header setting (left out of printed strings)."""
    return Arch.__dataclass_fields__[field_name].default


def _format_float(x: float) -> str:
    """A ratio as printed in strings (``0.25``, ``0.2``)."""
    return repr(float(x))


def format_block(b: Block) -> str:
    """Print a :class:`Block` in canonical block-string form."""
    parts = [f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}{b.stride}", f"e{b.expand}",
             f"i{b.in_ch}", f"o{b.out_ch}"]
    if b.se > 0:
        parts.append("se" + _format_float(b.se))
    if b.skip in SKIP_TOKENS:
        parts.append(SKIP_TOKENS[b.skip])
    if b.op in OP_TOKENS:
        parts.append(b.op)
    if b.groups != 1:
        parts.append(f"g{b.groups}")
    return "_".join(parts)


def format_arch(a: Arch) -> str:
    """Print an :class:`Arch` canonically (non-default header settings only)."""
    head = []
    for name, tok, kind in HEADER_TOKENS:
        v = getattr(a, name)
        if v == _header_default(name):
            continue
        if tok is None:
            head.append(str(v))
        elif kind is float:
            head.append(tok + _format_float(v))
        else:
            head.append(f"{tok}{v}")
    body = ",".join(format_block(b) for b in a.blocks)
    return ("_".join(head) + ":" + body) if head else body


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
                act=arch.act, expand_divisor=arch.expand_divisor,
            )
            layers.append(lc)
            size = lc.out_h
            cin = b.out_ch
    return tuple(layers)


def scale_width(arch: Arch, multiplier: float, *, scale_head: bool = False, divisor: int = 8) -> Arch:
    """Scale every stage width (and the stem) by ``multiplier`` with release rounding.

    The head stays at its width unless ``scale_head`` (MobileNetV2 scales it only
    for multipliers above 1). Returns a new Arch.
    """
    if not (isinstance(multiplier, (int, float)) and multiplier > 0):
        raise ValueError(f"width multiplier must be > 0, got {multiplier!r}")

    def r(c: int) -> int:
        return make_divisible(c * multiplier, divisor)

    blocks = tuple(b.replace(in_ch=r(b.in_ch), out_ch=r(b.out_ch)) for b in arch.blocks)
    head = arch.head_ch
    if scale_head and multiplier > 1 and head:
        head = make_divisible(head * multiplier, divisor)
    return arch.replace(blocks=blocks, stem_ch=r(arch.stem_ch), head_ch=head, name=None)
