"""Architecture -> ``torch.nn.Module`` (torch is imported only here).

Every structural choice is made in ``__init__``; ``forward`` has no data-dependent
Python control flow, so modules trace and export (ONNX, LiteRT) cleanly, and each
conv is followed directly by its BatchNorm so BN folds at conversion.
BN uses the TF release's settings: momentum 0.99 in TF's convention (0.01 in
PyTorch's), eps 1e-3.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .arch import Arch, LayerConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def _torch():
    try:
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("building models needs torch: pip install 'mnas-surrogate[torch]'") from exc
    return torch, nn


def _act(name: str):
    _, nn = _torch()
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hswish": nn.Hardswish}[name]()


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None):
    _, nn = _torch()
    mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if act:
        mods.append(_act(act))
    return nn.Sequential(*mods)


def _modules():
    """Module classes, defined lazily so that ``import space`` stays free of torch."""
    global _CACHE
    if _CACHE is not None:
        return _CACHE
    torch, nn = _torch()

    class SqueezeExcite(nn.Module):
        def __init__(self, ch: int, squeeze: int, act: str):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.reduce = nn.Conv2d(ch, squeeze, 1, bias=True)
            self.act = _act(act)
            self.expand = nn.Conv2d(squeeze, ch, 1, bias=True)
            self.gate = nn.Sigmoid()

        def forward(self, x):
            return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))

    class ChannelShuffle(nn.Module):
        def __init__(self, groups: int):
            super().__init__()
            self.groups = groups

        def forward(self, x):
            n, c, h, w = x.shape
            g = self.groups
            return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)

    class Layer(nn.Module):
        """One searchable layer (see :mod:`space.arch` for the semantics)."""

        def __init__(self, lc: LayerConfig):
            super().__init__()
            self.config = lc
            mods = []
            if lc.op == "skip":
                if not lc.is_identity:
                    mods.append(_conv_bn(lc.in_ch, lc.out_ch, 1, lc.stride))
            elif lc.op == "conv":
                mods.append(_conv_bn(lc.in_ch, lc.out_ch, lc.kernel, lc.stride, act=lc.act))
                if lc.se_ch:
                    mods.append(SqueezeExcite(lc.out_ch, lc.se_ch, lc.act))
            else:
                mid = lc.mid_ch
                if lc.has_expand:
                    mods.append(_conv_bn(lc.in_ch, mid, 1, groups=lc.groups, act=lc.act))
                    if lc.groups > 1:
                        mods.append(ChannelShuffle(lc.groups))
                mods.append(_conv_bn(mid, mid, lc.kernel, lc.stride, groups=mid, act=lc.act))
                if lc.se_ch:
                    mods.append(SqueezeExcite(mid, lc.se_ch, lc.act))
                mods.append(_conv_bn(mid, lc.out_ch, 1, groups=lc.groups))
            self.body = nn.Sequential(*mods)
            res = lc.residual
            self.add = res in ("add", "pool")
            short = []
            if res == "pool":
                if lc.stride > 1:
                    short.append(nn.AvgPool2d(lc.stride, lc.stride, ceil_mode=True))
                if lc.in_ch != lc.out_ch:
                    short.append(_conv_bn(lc.in_ch, lc.out_ch, 1))
            self.shortcut = nn.Sequential(*short)

        def forward(self, x):
            y = self.body(x)
            if self.add:
                y = y + self.shortcut(x)
            return y

    class Net(nn.Module):
        """A whole network: stem, layers, head, classifier."""

        def __init__(self, arch: Arch):
            super().__init__()
            self.arch = arch
            self.stem = _conv_bn(arch.in_ch, arch.stem_ch, arch.stem_kernel, arch.stem_stride,
                                 act=arch.act)
            self.layers = nn.Sequential(*[Layer(lc) for lc in arch.layers()])
            last = arch.blocks[-1].out_ch
            self.head = (_conv_bn(last, arch.head_ch, 1, act=arch.act) if arch.head_ch
                         else nn.Sequential())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(arch.dropout)
            self.classifier = nn.Linear(arch.last_ch, arch.num_classes)

        def features(self, x):
            return self.head(self.layers(self.stem(x)))

        def forward(self, x):
            x = self.pool(self.features(x)).flatten(1)
            return self.classifier(self.dropout(x))

    class Stem(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, act: str):
            super().__init__()
            self.stem = _conv_bn(in_ch, out_ch, kernel, stride, act=act)

        def forward(self, x):
            return self.stem(x)

    class Head(nn.Module):
        def __init__(self, in_ch: int, head_ch: int, num_classes: int, act: str):
            super().__init__()
            self.head = _conv_bn(in_ch, head_ch, 1, act=act) if head_ch else nn.Sequential()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(head_ch or in_ch, num_classes)

        def forward(self, x):
            return self.classifier(self.pool(self.head(x)).flatten(1))

    _CACHE = {"Layer": Layer, "Net": Net, "Stem": Stem, "Head": Head,
              "SqueezeExcite": SqueezeExcite, "ChannelShuffle": ChannelShuffle}
    return _CACHE


_CACHE: dict | None = None


def build_model(arch: Arch, *, init_seed: int | None = 0) -> "torch.nn.Module":
    """A ``torch.nn.Module`` for ``arch`` (eval-ready; call ``.train()`` to train).

    ``init_seed`` makes weight initialisation reproducible without touching the
    global RNG state; ``None`` uses the global RNG.
    """
    torch, _ = _torch()
    if not isinstance(arch, Arch):
        raise ValueError(f"build_model expects an Arch, got {type(arch).__name__}")
    if init_seed is None:
        return _init(_modules()["Net"](arch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return _init(_modules()["Net"](arch))


def build_layer(lc: LayerConfig, *, init_seed: int | None = 0) -> "torch.nn.Module":
    """One layer as a module taking ``(1, in_ch, h, w)``; what op tables time."""
    torch, _ = _torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if init_seed is None else init_seed)
        return _init(_modules()["Layer"](lc))


def build_op(lc: LayerConfig, *, init_seed: int = 0) -> "torch.nn.Module":
    """Any operator configuration (``stem``, ``head`` or a layer) as a module."""
    torch, _ = _torch()
    mods = _modules()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if lc.op == "stem":
            m = mods["Stem"](lc.in_ch, lc.out_ch, lc.kernel, lc.stride, lc.act)
        elif lc.op == "head":
            m = mods["Head"](lc.in_ch, lc.out_ch, lc.num_classes, lc.act)
        else:
            m = mods["Layer"](lc)
        return _init(m)


def _init(model):
    """Kaiming-normal convs, uniform classifier, BN at identity; returns eval mode."""
    torch, nn = _torch()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.weight.shape[1] ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
    return model.eval()


def input_shape(arch: Arch, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape of ``arch``."""
    return (batch, arch.in_ch, arch.resolution, arch.resolution)


def op_input_shape(lc: LayerConfig, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape of one operator configuration."""
    return (batch, lc.in_ch, lc.h, lc.w)
