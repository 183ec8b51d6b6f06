"""The text form of architectures: the token tables shared by printing (here) and
parsing (:mod:`space.blockstring`), and the canonical printers.

Imports nothing from the package; the printers read the fields of the
:class:`~space.arch.Block` and :class:`~space.arch.Arch` they are given.
"""
from __future__ import annotations

from typing import Any

OPS = ("mbconv", "irf", "conv", "skip", "fused", "fusedp")

# -- text form: the token tables shared by printing (here) and parsing (blockstring) --
SKIP_TOKENS = {"none": "noskip", "pool": "poolskip"}  # Block.skip -> token; identity: no token
OP_TOKENS = tuple(op for op in OPS if op != "mbconv")  # printed as themselves; mbconv: no token
# Architecture header, in canonical order: (Arch field, token, kind); the activation
# has no token (its value is the token). Defaults are the Arch field defaults.
HEADER_TOKENS = (
    ("resolution", "res", int), ("stem_ch", "stem", int), ("stem_kernel", "stemk", int),
    ("stem_stride", "stems", int), ("head_ch", "head", int), ("num_classes", "cls", int),
    ("act", None, str), ("expand_divisor", "div", int), ("dropout", "drop", float),
    ("in_ch", "in", int), ("mix_ch", "mix", int), ("mix_norm", None, "mix_norm"),
    ("fc_bias", None, "fc_bias"),
)
# valueless header tokens: token -> (Arch field, value)
HEADER_FLAGS = {"mixbn": ("mix_norm", "bn"), "mixplain": ("mix_norm", "none"),
                "nofcbias": ("fc_bias", False)}
# SE option tokens of a block, in canonical order after se<ratio>
SE_TOKENS = {"sem": ("se_base", "mid"), "sehs": ("se_gate", "hsigmoid")}


def _header_default(a: Any, field_name: str) -> object:
    """Default of an :class:`Arch` header setting (left out of printed strings)."""
    return type(a).__dataclass_fields__[field_name].default


def _format_float(x: float) -> str:
    """A ratio as printed in strings (``0.25``, ``0.2``)."""
    return repr(float(x))


def format_block(b: Any) -> str:
    """Print a :class:`Block` in canonical block-string form.

    Order: ``r k s e i o [m] [se [sem] [sed] [sehs] [se<act>]] [skip] [op] [g] [act]``.
    """
    parts = [f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}{b.stride}", f"e{b.expand}",
             f"i{b.in_ch}", f"o{b.out_ch}"]
    if b.mid_ch:
        parts.append(f"m{b.mid_ch}")
    if b.se > 0:
        parts.append("se" + _format_float(b.se))
        if b.se_base != "in":
            parts.append("sem")
        if b.se_div != 1:
            parts.append(f"sed{b.se_div}")
        if b.se_gate != "sigmoid":
            parts.append("sehs")
        if b.se_act:
            parts.append("se" + b.se_act)
    if b.skip in SKIP_TOKENS:
        parts.append(SKIP_TOKENS[b.skip])
    if b.op in OP_TOKENS:
        parts.append(b.op)
    if b.groups != 1:
        parts.append(f"g{b.groups}")
    if b.act:
        parts.append(b.act)
    return "_".join(parts)


def format_arch(a: Any) -> str:
    """Print an :class:`Arch` canonically (non-default header settings only)."""
    head = []
    flags = {(f, v): tok for tok, (f, v) in HEADER_FLAGS.items()}
    for name, tok, kind in HEADER_TOKENS:
        v = getattr(a, name)
        if v == _header_default(a, name):
            continue
        if (name, v) in flags:
            head.append(flags[(name, v)])
        elif tok is None:
            head.append(str(v))
        elif kind is float:
            head.append(tok + _format_float(v))
        else:
            head.append(f"{tok}{v}")
    body = ",".join(format_block(b) for b in a.blocks)
    return ("_".join(head) + ":" + body) if head else body
