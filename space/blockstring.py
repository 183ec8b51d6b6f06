"""Parse and print block strings and architecture strings.

Block strings follow the authors' release, ``r{repeats}_k{kernel}_s{s}{s}_e{expand}
_i{in}_o{out}[_se{ratio}][_noskip|_poolskip][_irf|_conv|_skip][_g{groups}]``: the
six leading tokens in that order, then optional tokens in that order.

An architecture string is an optional header of non-default settings, a colon, and
the block strings joined by commas::

    res192_silu_div8:r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24

Header tokens (defaults in brackets): ``res`` [224], ``stem`` [32], ``stemk`` [3],
``stems`` [2], ``head`` [1280], ``cls`` [1000], an activation ``relu|relu6|silu|
hswish`` [relu], ``div`` [1], ``drop`` [0.2], ``in`` [3]. With every setting at
its default the header and colon are left out, so an authors' block list is itself
a valid architecture string. Printing is canonical: ``format(parse(s)) == s`` for
every string this module prints, and ``parse(format(x)) == x`` for every object.
"""
from __future__ import annotations

import re

from .arch import ACTS, Arch, Block

_NUM = re.compile(r"^(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_TOKEN = re.compile(r"^([a-z]+)(.*)$")

_LEADING = ("r", "k", "s", "e", "i", "o")
_LEADING_HELP = "r{repeats}_k{kernel}_s{stride}{stride}_e{expand}_i{in}_o{out}"
_OPTIONAL_ORDER = ("se", "skip", "op", "g")
_SKIP_WORDS = {"noskip": "none", "poolskip": "pool"}
_OP_WORDS = {"irf": "irf", "conv": "conv", "skip": "skip"}


def _int(token: str, text: str, what: str) -> int:
    if not _NUM.match(text):
        raise ValueError(f"bad token {token!r}: expected {what} as a plain integer")
    return int(text)


def _float(token: str, text: str, what: str) -> float:
    if not _FLOAT.match(text):
        raise ValueError(f"bad token {token!r}: expected {what} as a decimal number such as 0.25")
    return float(text)


def _fmt_float(x: float) -> str:
    return repr(float(x))


def parse_block(text: str) -> Block:
    """Parse one block string into a :class:`Block`; ``ValueError`` names the bad token."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty block string: expected {_LEADING_HELP}")
    tokens = text.strip().split("_")
    if len(tokens) < 6:
        raise ValueError(f"block string {text!r} is too short: expected {_LEADING_HELP}[...]")
    vals: dict[str, int] = {}
    for want, tok in zip(_LEADING, tokens[:6]):
        m = _TOKEN.match(tok)
        if not m or m.group(1) != want:
            raise ValueError(
                f"bad token {tok!r} in block {text!r}: expected '{want}...' here ({_LEADING_HELP})"
            )
        body = m.group(2)
        if want == "s":
            if len(body) != 2 or body[0] != body[1] or body[0] not in "12":
                raise ValueError(
                    f"bad token {tok!r} in block {text!r}: stride must be s11 or s22"
                )
            vals["s"] = int(body[0])
        else:
            vals[want] = _int(tok, body, {"r": "repeats", "k": "kernel", "e": "expansion",
                                          "i": "input width", "o": "output width"}[want])
    kw: dict = {}
    last = -1
    for tok in tokens[6:]:
        if tok in _SKIP_WORDS:
            slot, key, value = "skip", "skip", _SKIP_WORDS[tok]
        elif tok in _OP_WORDS:
            slot, key, value = "op", "op", _OP_WORDS[tok]
        elif tok.startswith("se") and len(tok) > 2 and (tok[2].isdigit()):
            slot, key, value = "se", "se", _float(tok, tok[2:], "the SE ratio")
        elif tok.startswith("g") and tok[1:2].isdigit():
            slot, key, value = "g", "groups", _int(tok, tok[1:], "the group count")
        else:
            raise ValueError(
                f"bad token {tok!r} in block {text!r}: expected one of se<ratio>, noskip, "
                f"poolskip, irf, conv, skip, g<groups>"
            )
        pos = _OPTIONAL_ORDER.index(slot)
        if pos <= last:
            raise ValueError(
                f"token {tok!r} in block {text!r} is repeated or out of order: "
                f"optional tokens go se, noskip|poolskip, irf|conv|skip, g"
            )
        last = pos
        kw[key] = value
    try:
        return Block(repeats=vals["r"], kernel=vals["k"], stride=vals["s"], expand=vals["e"],
                     in_ch=vals["i"], out_ch=vals["o"], **kw)
    except ValueError as exc:
        raise ValueError(f"block {text!r}: {exc}") from None


def format_block(b: Block) -> str:
    """Print a :class:`Block` in canonical block-string form."""
    parts = [f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}{b.stride}", f"e{b.expand}",
             f"i{b.in_ch}", f"o{b.out_ch}"]
    if b.se > 0:
        parts.append("se" + _fmt_float(b.se))
    if b.skip == "none":
        parts.append("noskip")
    elif b.skip == "pool":
        parts.append("poolskip")
    if b.op != "mbconv":
        parts.append(b.op)
    if b.groups != 1:
        parts.append(f"g{b.groups}")
    return "_".join(parts)


# (field, token, kind, default) in canonical order
_HEADER = (
    ("resolution", "res", int, 224),
    ("stem_ch", "stem", int, 32),
    ("stem_kernel", "stemk", int, 3),
    ("stem_stride", "stems", int, 2),
    ("head_ch", "head", int, 1280),
    ("num_classes", "cls", int, 1000),
    ("act", None, str, "relu"),
    ("expand_divisor", "div", int, 1),
    ("dropout", "drop", float, 0.2),
    ("in_ch", "in", int, 3),
)
_HEADER_HELP = "res<int>, stem<int>, stemk<int>, stems<int>, head<int>, cls<int>, " + \
    "|".join(ACTS) + ", div<int>, drop<float>, in<int>"


def parse_arch(text: str) -> Arch:
    """Parse an architecture string (optional header, ``:``, comma-separated blocks)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty architecture string")
    text = text.strip()
    header, _, body = text.rpartition(":")
    kw: dict = {}
    if header:
        order = [h[1] if h[1] else "act" for h in _HEADER]
        last = -1
        for tok in header.split("_"):
            if tok in ACTS:
                key, field, kind = "act", "act", str
                value: object = tok
            else:
                m = _TOKEN.match(tok)
                spec = next((h for h in _HEADER if m and h[1] == m.group(1)), None)
                if spec is None:
                    raise ValueError(f"bad header token {tok!r} in {text!r}: expected {_HEADER_HELP}")
                field, key, kind = spec[0], spec[1], spec[2]
                body_txt = m.group(2)
                value = (_float(tok, body_txt, field) if kind is float
                         else _int(tok, body_txt, field))
            pos = order.index(key)
            if pos <= last:
                raise ValueError(f"header token {tok!r} in {text!r} is repeated or out of order "
                                 f"(order: {_HEADER_HELP})")
            last = pos
            kw[field] = value
    blocks = tuple(parse_block(s) for s in body.split(","))
    try:
        return Arch(blocks=blocks, **kw)
    except ValueError as exc:
        raise ValueError(f"architecture {text!r}: {exc}") from None


def format_arch(a: Arch) -> str:
    """Print an :class:`Arch` canonically (non-default header settings only)."""
    head = []
    for field, tok, kind, default in _HEADER:
        v = getattr(a, field)
        if v == default:
            continue
        if tok is None:
            head.append(str(v))
        elif kind is float:
            head.append(tok + _fmt_float(v))
        else:
            head.append(f"{tok}{v}")
    body = ",".join(format_block(b) for b in a.blocks)
    return ("_".join(head) + ":" + body) if head else body
