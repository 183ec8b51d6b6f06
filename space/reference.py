"""Reference architectures, written as the authors' block strings.

Counts at 224x224 (see :mod:`space.counting`) equal the published figures:
mnasnet-a1 3,887,038 params / 311.6M MAdds; mnasnet-b1 4,383,312 (= torchvision
``mnasnet1_0``); mnasnet-b1 x0.5/x0.75/x1.3 2,218,512 / 3,170,208 / 6,282,256;
mnasnet-small 2,030,416; mobilenetv2-1.0 3,504,872 / 300.8M.

mnasnet-small: the release writes its first stage ``r1_k3_s11_e1_i16_o8`` after an
8-channel stem; the TF model takes its real input width from the tensor (8) and the
identity skip is off because the declared 16 != 8. We write the equivalent,
consistent ``r1_k3_s11_e1_i8_o8_noskip``.

mnasnet-a1-e{3,6}k{3,5}: the paper's Table 6 variants ("MBConv3 (k3x3) only" etc.),
A1's layers and filters with every stage but the first set to one op; we keep the
first stage and the SE choices, which the table does not specify.

Beyond these, the registry holds the networks of :mod:`space.reference_mobile`
(MobileNetV3 TF-slim and pytorchcv, pytorchcv's MobileNetV2, ProxylessNAS, SPNASNet,
FBNet-C, EfficientNet-EdgeTPU) and the Once-for-All subnets of
:mod:`space.reference_ofa` under their ``ofa_specialized`` names. :data:`SOURCES`
names where each network's architecture comes from; :data:`ALIASES` maps further
names (the ``pytorchcv`` model names of the mobile-ml-benchmark) to registry names,
and :func:`get_reference` / :func:`resolve_arch` accept them.
"""
from __future__ import annotations

import math

from .arch import Arch, scale_width
from .blockstring import parse_arch
from .reference_mobile import MOBILE_ALIASES, MOBILE_REGISTRY, MOBILE_SOURCES, mobile_width_fns
from .reference_ofa import SOURCE as OFA_SOURCE
from .reference_ofa import ofa_registry

_A1 = ("r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24,r3_k5_s22_e3_i24_o40_se0.25,"
       "r4_k3_s22_e6_i40_o80,r2_k3_s11_e6_i80_o112_se0.25,r3_k5_s22_e6_i112_o160_se0.25,"
       "r1_k3_s11_e6_i160_o320")
_B1 = ("r1_k3_s11_e1_i32_o16_noskip,r3_k3_s22_e3_i16_o24,r3_k5_s22_e3_i24_o40,"
       "r3_k5_s22_e6_i40_o80,r2_k3_s11_e6_i80_o96,r4_k5_s22_e6_i96_o192,"
       "r1_k3_s11_e6_i192_o320_noskip")
_SMALL = ("stem8_drop0.0:r1_k3_s11_e1_i8_o8_noskip,r1_k3_s22_e3_i8_o16,r2_k3_s22_e6_i16_o16,"
          "r4_k5_s22_e6_i16_o32_se0.25,r3_k3_s11_e6_i32_o32_se0.25,"
          "r3_k5_s22_e6_i32_o88_se0.25,r1_k3_s11_e6_i88_o144")
_D1 = ("r1_k3_s11_e9_i32_o24,r3_k3_s22_e9_i24_o36,r5_k3_s22_e9_i36_o48,r4_k5_s22_e9_i48_o96,"
       "r5_k7_s11_e3_i96_o96,r3_k3_s22_e9_i96_o80,r1_k7_s11_e6_i80_o320_noskip")
_MBV2 = ("relu6:r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24,r3_k3_s22_e6_i24_o32,"
         "r4_k3_s22_e6_i32_o64,r3_k3_s11_e6_i64_o96,r3_k3_s22_e6_i96_o160,r1_k3_s11_e6_i160_o320")
_EFFB0 = ("silu_div8:r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24_se0.25,"
          "r2_k5_s22_e6_i24_o40_se0.25,r3_k3_s22_e6_i40_o80_se0.25,"
          "r3_k5_s11_e6_i80_o112_se0.25,r4_k5_s22_e6_i112_o192_se0.25,"
          "r1_k3_s11_e6_i192_o320_se0.25")

MBV2_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MBV2_RESOLUTIONS = (96, 128, 160, 192, 224)
B1_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def _named(arch: Arch, name: str) -> Arch:
    return arch.replace(name=name)


def _build_registry() -> dict[str, Arch]:
    reg: dict[str, Arch] = {}
    a1, b1 = parse_arch(_A1), parse_arch(_B1)
    reg["mnasnet-a1"] = a1
    reg["mnasnet-a1-0.35"] = scale_width(a1, 0.35)
    for e in (3, 6):
        for k in (3, 5):
            # MnasNet paper Table 6: A1's layers and filters with one op everywhere
            # (the first, depthwise-separable stage and the SE choices kept)
            blocks = (a1.blocks[0],) + tuple(b.replace(expand=e, kernel=k) for b in a1.blocks[1:])
            reg[f"mnasnet-a1-e{e}k{k}"] = a1.replace(blocks=blocks)
    reg["mnasnet-b1"] = b1
    for m in B1_WIDTHS:
        if m != 1.0:
            reg[f"mnasnet-b1-{m}"] = scale_width(b1, m)
    reg["mnasnet-small"] = parse_arch(_SMALL)
    reg["mnasnet-d1"] = parse_arch(_D1)
    mbv2 = parse_arch(_MBV2)
    for m in MBV2_WIDTHS:
        base = mbv2 if m == 1.0 else scale_width(mbv2, m, scale_head=True)
        for r in MBV2_RESOLUTIONS:
            key = f"mobilenetv2-{m}" + ("" if r == 224 else f"-{r}")
            reg[key] = base.replace(resolution=r)
    reg["efficientnet-b0"] = parse_arch(_EFFB0)
    for k, v in MOBILE_REGISTRY.items():
        reg[k] = v
    for k, v in ofa_registry().items():
        reg[k] = v
    return {k: _named(v, k) for k, v in reg.items()}


REFERENCE: dict[str, Arch] = _build_registry()

_MNAS = ("MnasNet, Tan et al. CVPR'19 (arXiv 1807.11626); "
         "https://github.com/tensorflow/tpu/tree/master/models/official/mnasnet")
_MBV2 = ("MobileNetV2, Sandler et al. CVPR'18 (arXiv 1801.04381); "
         "https://github.com/tensorflow/models/tree/master/research/slim/nets/mobilenet")


def _source(name: str) -> str:
    if name in MOBILE_SOURCES:
        return MOBILE_SOURCES[name]
    if name.startswith("mnasnet"):
        return _MNAS
    if name.startswith("mobilenetv2-"):
        return _MBV2
    if name.startswith("efficientnet-b0"):
        return ("EfficientNet, Tan & Le ICML'19 (arXiv 1905.11946), as torchvision's efficientnet_b0")
    return OFA_SOURCE


#: where each registered network's architecture comes from (paper and code URL)
SOURCES: dict[str, str] = {name: _source(name) for name in REFERENCE}
#: further names (pytorchcv's, as in the mobile-ml-benchmark CSV) -> registry names
ALIASES: dict[str, str] = dict(MOBILE_ALIASES)
#: width variants that follow the release's own scaling rule instead of scale_width
_WIDTH_FNS = mobile_width_fns()


def reference_names() -> list[str]:
    """Names of all registered reference architectures."""
    return sorted(REFERENCE)


def get_reference(name: str) -> Arch:
    """A reference architecture by name (``ValueError`` lists close names)."""
    if name in ALIASES:
        return REFERENCE[ALIASES[name]]
    try:
        return REFERENCE[name]
    except KeyError:
        close = [n for n in REFERENCE if n.split("-")[0] == name.split("-")[0]] or reference_names()
        raise ValueError(f"unknown architecture name {name!r}; known: {', '.join(close)}") from None


#: width multipliers outside this range are refused (the releases use 0.35 .. 1.4)
WIDTH_RANGE = (0.1, 4.0)


def variant_name(base: str, width: float | None = None, resolution: int | None = None) -> str:
    """Canonical name of a variant: ``base@w<width>,r<resolution>`` (either part optional)."""
    parts = ([f"w{width:g}"] if width is not None else []) + \
            ([f"r{resolution}"] if resolution is not None else [])
    return f"{base}@{','.join(parts)}" if parts else base


def variant(base: str | Arch, width: float | None = None, resolution: int | None = None) -> Arch:
    """A width-multiplier and/or resolution variant of a reference network (or an ``Arch``).

    Widths scale with the release rounding (:func:`~space.arch.scale_width`; the head
    too for MobileNetV2 above 1.0, as its release does); networks whose release scales
    its own way (TF-slim MobileNetV3, pytorchcv's MobileNetV2/V3 ``_w1`` builds, whose
    rule is ``int(c * m)`` or ``round_channels``) are rebuilt by that release's rule,
    so ``variant("mobilenetv2_w1", 0.75)`` is pytorchcv's ``mobilenetv2_w3d4``. The
    result is named with :func:`variant_name`, which :func:`resolve_arch` reads back.
    """
    if isinstance(base, str) and base in ALIASES:
        base = ALIASES[base]
    arch = get_reference(base) if isinstance(base, str) else base
    if not isinstance(arch, Arch):
        raise ValueError(f"expected a reference name or an Arch, got {type(base).__name__}")
    name = arch.name
    if name and "@" in name:
        raise ValueError(f"{name} is already a variant; vary its base network {name.split('@')[0]!r}")
    if width is not None:
        if isinstance(width, bool) or not isinstance(width, (int, float)) or \
                not WIDTH_RANGE[0] <= width <= WIDTH_RANGE[1]:
            raise ValueError(f"width multiplier must be a number in {WIDTH_RANGE[0]}..{WIDTH_RANGE[1]}, "
                             f"got {width!r}")
        if name in _WIDTH_FNS:
            arch = _WIDTH_FNS[name](float(width)).replace(resolution=arch.resolution)
        else:
            arch = scale_width(arch, float(width), scale_head=bool(name and name.startswith("mobilenetv2")))
    if resolution is not None:
        arch = arch.replace(resolution=resolution)
    return arch.replace(name=variant_name(name, width, resolution) if name else None)


def parse_variant(text: str) -> tuple[str, float | None, int | None]:
    """``'mnasnet-a1@w0.75,r192'`` -> ``('mnasnet-a1', 0.75, 192)``; strict (``ValueError``)."""
    base, sep, spec = text.partition("@")
    expected = "expected NAME@w<width>,r<resolution>, e.g. mnasnet-a1@w0.75,r192"
    if not sep or not base or not spec:
        raise ValueError(f"architecture variant {text!r}: {expected}")
    width = resolution = None
    for tok in spec.split(","):
        try:
            if tok[:1] == "w" and width is None:
                width = float(tok[1:])
                if not math.isfinite(width):
                    raise ValueError
                continue
            if tok[:1] == "r" and resolution is None and tok[1:].isdigit():
                resolution = int(tok[1:])
                continue
        except ValueError:
            pass
        raise ValueError(f"architecture variant {text!r}: bad or repeated part {tok!r}; {expected}")
    return base, width, resolution


def resolve_arch(text: str) -> Arch:
    """A registered name, a variant of one (``mnasnet-a1@w0.75,r192``) or an architecture string."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an architecture name or string, got an empty value")
    text = text.strip()
    if text in REFERENCE:
        return REFERENCE[text]
    if text in ALIASES:
        return REFERENCE[ALIASES[text]]
    if "@" in text:
        return variant(*parse_variant(text))
    if "_" not in text:
        return get_reference(text)
    return parse_arch(text)
