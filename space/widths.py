"""Channel widths: the releases' rounding, expanded and squeeze widths, width scaling.

Imports nothing from the package (``scale_width`` only calls methods of the
:class:`~space.arch.Arch` it is given), so :mod:`space.arch` builds on it.
"""
from __future__ import annotations

from typing import Any

MAX_EXPAND = 12


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


def expand_for(mid: int, in_ch: int) -> int:
    """The ``e`` that describes an explicit expanded width: ``round(mid / in)`` in 1..12."""
    return max(1, min(MAX_EXPAND, int(mid / in_ch + 0.5)))


def squeeze_width(base: int, ratio: float, divisor: int = 1) -> int:
    """SE bottleneck width: ``max(1, int(base * ratio))``, or ``make_divisible`` when divisor > 1."""
    if ratio <= 0:
        return 0
    if divisor > 1:
        return make_divisible(base * ratio, divisor)
    return max(1, int(base * ratio))


#: Named width-rounding rules of :func:`scale_width` (``c`` channels, ``m`` multiplier):
#: ``tf`` the TF releases' (MnasNet, MobileNetV2/V3 TF-slim, EfficientNet) and
#: pytorchcv's ``round_channels``: ``make_divisible(c * m, 8)``; ``trunc`` pytorchcv's
#: MobileNetV2: ``int(c * m)``, no rounding to 8.
WIDTH_RULES = ("tf", "trunc")


def round_width(c: int, multiplier: float, rule: str = "tf", divisor: int = 8) -> int:
    """``c`` channels scaled by ``multiplier`` under a :data:`WIDTH_RULES` rule."""
    if rule == "tf":
        return make_divisible(c * multiplier, divisor)
    if rule == "trunc":
        return max(1, int(c * multiplier))
    raise ValueError(f"width rule must be one of {', '.join(WIDTH_RULES)}; got {rule!r}")


def scale_width(arch: Any, multiplier: float, *, scale_head: bool = False, divisor: int = 8,
                rule: str = "tf") -> Any:
    """Scale every stage width (and the stem) by ``multiplier`` with release rounding.

    The head stays at its width unless ``scale_head`` (MobileNetV2 scales it only
    for multipliers above 1). Explicit expanded widths (``m<mid>``) scale too, as
    pytorchcv's MobileNetV3 scales its ``exp_channels``. ``rule`` names the rounding
    (:data:`WIDTH_RULES`): ``tf`` (default) or ``trunc``. Returns a new Arch.
    """
    if not (isinstance(multiplier, (int, float)) and multiplier > 0):
        raise ValueError(f"width multiplier must be > 0, got {multiplier!r}")
    if rule not in WIDTH_RULES:
        raise ValueError(f"width rule must be one of {', '.join(WIDTH_RULES)}; got {rule!r}")

    def r(c: int) -> int:
        return round_width(c, multiplier, rule, divisor)

    blocks = []
    for b in arch.blocks:
        cin, cout = r(b.in_ch), r(b.out_ch)
        if b.mid_ch:
            mid = r(b.mid_ch)
            blocks.append(b.replace(in_ch=cin, out_ch=cout, mid_ch=mid, expand=expand_for(mid, cin)))
        else:
            blocks.append(b.replace(in_ch=cin, out_ch=cout))
    head = arch.head_ch
    if scale_head and multiplier > 1 and head:
        head = r(head)
    return arch.replace(blocks=tuple(blocks), stem_ch=r(arch.stem_ch), head_ch=head, name=None)
