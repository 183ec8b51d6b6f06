"""The ``torch.nn`` modules of the search spaces (imports torch; ``import space`` does not).

Every structural choice is made in ``__init__``; ``forward`` has no data-dependent
Python control flow, so modules trace and export (ONNX, LiteRT) cleanly, and each
conv is followed directly by its BatchNorm (:class:`ConvBN`) so BN folds at
conversion. BN uses the TF release's settings: momentum 0.99 in TF's convention
(0.01 in PyTorch's), eps 1e-3.

A :class:`Net` is composed of the operators that latency tables time: its ``stem``
is the :class:`Stem` of ``arch.stem_config()``, its ``layers`` the :class:`Layer`
of each ``arch.layers()`` entry, its ``head`` the :class:`Head` of
``arch.head_config()``. All classes are top-level, so modules pickle (spawned
conversion workers receive them). :func:`init_weights` is the TF release's
initialisation. Build modules with :mod:`space.build`, which seeds it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .arch import Arch, LayerConfig

__all__ = ["BN_EPS", "BN_MOMENTUM", "ChannelShuffle", "ConvBN", "HardSqueezeExcite", "Head",
           "Layer", "MixHead", "Net", "SqueezeExcite", "Stem", "activation", "head_module",
           "init_weights"]

BN_MOMENTUM = 0.01
BN_EPS = 1e-3
_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hswish": nn.Hardswish}


def activation(name: str) -> nn.Module:
    """The activation module of an :data:`space.arch.ACTS` name."""
    return _ACTS[name]()


class ConvBN(nn.Sequential):
    """``kxk`` conv (no bias, padding ``k // 2``) + BatchNorm [+ activation]."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: str | None = None):
        mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
        if act:
            mods.append(activation(act))
        super().__init__(*mods)


class _GatedSE(nn.Module):
    """``x * gate(expand(act(reduce(avgpool(x)))))`` with biased 1x1 convs; ``GATE`` names it."""

    GATE: type[nn.Module] = nn.Sigmoid

    def __init__(self, ch: int, squeeze: int, act: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(ch, squeeze, 1, bias=True)
        self.act = activation(act)
        self.expand = nn.Conv2d(squeeze, ch, 1, bias=True)
        self.gate = self.GATE()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class SqueezeExcite(_GatedSE):
    """``x * sigmoid(expand(act(reduce(avgpool(x)))))`` with biased 1x1 convs."""

    GATE = nn.Sigmoid


class HardSqueezeExcite(_GatedSE):
    """MobileNetV3's SE: ``x * hsigmoid(expand(act(reduce(avgpool(x)))))``, biased 1x1 convs.

    A class of its own (not a :class:`SqueezeExcite`), so that exporters that only
    know the sigmoid gate refuse it instead of writing the wrong gate.
    """

    GATE = nn.Hardsigmoid


def _se(lc: LayerConfig, ch: int) -> nn.Module:
    cls = HardSqueezeExcite if lc.se_gate == "hsigmoid" else SqueezeExcite
    return cls(ch, lc.se_ch, lc.se_inner_act)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle over ``groups`` (after FBNet's grouped 1x1 conv)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


class Layer(nn.Module):
    """One searchable layer (see :mod:`space.arch` for the semantics)."""

    def __init__(self, lc: LayerConfig):
        super().__init__()
        self.config = lc
        mods: list[nn.Module] = []
        if lc.op == "skip":
            if not lc.is_identity:
                mods.append(ConvBN(lc.in_ch, lc.out_ch, 1, lc.stride))
        elif lc.op == "conv" or lc.is_single_conv:
            mods.append(ConvBN(lc.in_ch, lc.out_ch, lc.kernel, lc.stride, act=lc.act))
            if lc.se_ch:
                mods.append(_se(lc, lc.out_ch))
        elif lc.op in ("fused", "fusedp"):
            mid = lc.mid_ch
            s_kxk, s_proj = (lc.stride, 1) if lc.op == "fused" else (1, lc.stride)
            mods.append(ConvBN(lc.in_ch, mid, lc.kernel, s_kxk, act=lc.act))
            if lc.se_ch:
                mods.append(_se(lc, mid))
            mods.append(ConvBN(mid, lc.out_ch, 1, s_proj))
        else:
            mid = lc.mid_ch
            if lc.has_expand:
                mods.append(ConvBN(lc.in_ch, mid, 1, groups=lc.groups, act=lc.act))
                if lc.groups > 1:
                    mods.append(ChannelShuffle(lc.groups))
            mods.append(ConvBN(mid, mid, lc.kernel, lc.stride, groups=mid, act=lc.act))
            if lc.se_ch:
                mods.append(_se(lc, mid))
            mods.append(ConvBN(mid, lc.out_ch, 1, groups=lc.groups))
        self.body = nn.Sequential(*mods)
        res = lc.residual
        self.add = res in ("add", "pool")
        short: list[nn.Module] = []
        if res == "pool":
            if lc.stride > 1:
                short.append(nn.AvgPool2d(lc.stride, lc.stride, ceil_mode=True))
            if lc.in_ch != lc.out_ch:
                short.append(ConvBN(lc.in_ch, lc.out_ch, 1))
        self.shortcut = nn.Sequential(*short)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.add:
            y = y + self.shortcut(x)
        return y


class Stem(ConvBN):
    """The stem conv + BN + activation of an ``op='stem'`` configuration."""

    def __init__(self, lc: LayerConfig):
        super().__init__(lc.in_ch, lc.out_ch, lc.kernel, lc.stride, act=lc.act)


class Head(nn.Module):
    """The ``op='head'`` operator: 1x1 head conv (when ``out_ch``), pool, dropout, classifier."""

    def __init__(self, lc: LayerConfig, dropout: float = 0.0):
        super().__init__()
        self.conv = ConvBN(lc.in_ch, lc.out_ch, 1, act=lc.act) if lc.out_ch else nn.Sequential()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(lc.out_ch or lc.in_ch, lc.num_classes, bias=lc.fc_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.conv(x)).flatten(1)))


class MixHead(nn.Module):
    """MobileNetV3's head: 1x1 conv (when ``out_ch``) + BN + act, global pool, 1x1 mix
    conv to ``mix_ch`` (bias, BN or neither per ``mix_norm``) + act, dropout, classifier.

    Not a :class:`Head` subclass, so exporters that know only that head refuse it.
    """

    def __init__(self, lc: LayerConfig, dropout: float = 0.0):
        super().__init__()
        self.conv = ConvBN(lc.in_ch, lc.out_ch, 1, act=lc.act) if lc.out_ch else nn.Sequential()
        self.pool = nn.AdaptiveAvgPool2d(1)
        pooled = lc.out_ch or lc.in_ch
        mix: list[nn.Module] = [nn.Conv2d(pooled, lc.mix_ch, 1, bias=lc.mix_norm == "bias")]
        if lc.mix_norm == "bn":
            mix.append(nn.BatchNorm2d(lc.mix_ch, eps=BN_EPS, momentum=BN_MOMENTUM))
        mix.append(activation(lc.act))
        self.mix = nn.Sequential(*mix)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(lc.mix_ch, lc.num_classes, bias=lc.fc_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.mix(self.pool(self.conv(x))).flatten(1)))


def head_module(lc: LayerConfig, dropout: float = 0.0) -> nn.Module:
    """The head module of an ``op='head'`` configuration (:class:`MixHead` with a mix conv)."""
    return MixHead(lc, dropout) if lc.mix_ch else Head(lc, dropout)


# Net's state-dict keys keep the flat layout of the first releases (checkpoints of
# earlier runs load): nested prefix inside ``head`` -> flat prefix.
_FLAT_KEYS = (("head.conv.", "head."), ("head.classifier.", "classifier."))


def _flatten_keys(module: nn.Module, state: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook: nested keys -> the flat layout (order kept)."""
    for key in list(state):
        for nested, flat in _FLAT_KEYS:
            if key.startswith(prefix + nested):
                state[prefix + flat + key[len(prefix + nested):]] = state.pop(key)
                break


def _nest_keys(module: nn.Module, state: dict, prefix: str, *args) -> None:
    """Load pre-hook: flat-layout keys -> the nested modules (nested keys pass)."""
    for key in list(state):
        rest = key[len(prefix):] if key.startswith(prefix) else None
        if rest is None:
            continue
        if rest.startswith("classifier."):
            state[prefix + "head." + rest] = state.pop(key)
        elif rest.startswith("head.") and rest[5:6].isdigit():
            state[prefix + "head.conv." + rest[5:]] = state.pop(key)


class Net(nn.Module):
    """A whole network: :class:`Stem`, the :class:`Layer` s, :class:`Head`."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.stem = Stem(arch.stem_config())
        self.layers = nn.Sequential(*[Layer(lc) for lc in arch.layers()])
        self.head = head_module(arch.head_config(), dropout=arch.dropout)
        self.register_state_dict_post_hook(_flatten_keys)
        self.register_load_state_dict_pre_hook(_nest_keys)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (after the head conv, before pooling)."""
        return self.head.conv(self.layers(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def init_weights(model: nn.Module) -> nn.Module:
    """The TF MnasNet release's initialisation; returns ``model`` in eval mode.

    Convs: normal with std ``sqrt(2 / fan_out)``, ``fan_out = k*k*out_channels //
    groups`` (so a depthwise kxk conv has fan_out k*k); conv biases zero. Classifier:
    uniform in ``+-1/sqrt(in_features)``, bias zero. BatchNorm at identity.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            fan_out = kh * kw * m.out_channels // m.groups
            with torch.no_grad():  # as kaiming_normal_ (same draws, same std when groups is 1)
                m.weight.normal_(0.0, math.sqrt(2.0) / math.sqrt(fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.weight.shape[1] ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model.eval()
