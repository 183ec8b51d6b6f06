"""Parse block strings and architecture strings (printing lives in :mod:`space.arch`).

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
every string :func:`format_arch` prints, and ``parse(format(x)) == x`` for every
object. The token tables and the printers are defined beside the classes in
:mod:`space.arch` (so ``str(arch)`` needs no import from here); this module reads
the same tables and re-exports the printers, so parse and print cannot drift.
"""
from __future__ import annotations

import re

from .arch import (ACTS, HEADER_TOKENS, OP_TOKENS, SKIP_TOKENS, Arch, Block, format_arch,
                   format_block)

__all__ = ["format_arch", "format_block", "parse_arch", "parse_block"]

_NUM = re.compile(r"^(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_TOKEN = re.compile(r"^([a-z]+)(.*)$")

_LEADING = ("r", "k", "s", "e", "i", "o")
_LEADING_HELP = "r{repeats}_k{kernel}_s{stride}{stride}_e{expand}_i{in}_o{out}"
_OPTIONAL_ORDER = ("se", "skip", "op", "g")
_SKIP_WORDS = {tok: skip for skip, tok in SKIP_TOKENS.items()}
_OP_WORDS = {op: op for op in OP_TOKENS}


def _int(token: str, text: str, what: str) -> int:
    if not _NUM.match(text):
        raise ValueError(f"bad token {token!r}: expected {what} as a plain integer")
    return int(text)


def _float(token: str, text: str, what: str) -> float:
    if not _FLOAT.match(text):
        raise ValueError(f"bad token {token!r}: expected {what} as a decimal number such as 0.25")
    return float(text)


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


_HEADER_HELP = ", ".join("|".join(ACTS) if tok is None else f"{tok}<{kind.__name__}>"
                         for _, tok, kind in HEADER_TOKENS)


def parse_arch(text: str) -> Arch:
    """Parse an architecture string (optional header, ``:``, comma-separated blocks)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty architecture string")
    text = text.strip()
    header, _, body = text.rpartition(":")
    kw: dict = {}
    if header:
        order = [h[1] if h[1] else "act" for h in HEADER_TOKENS]
        last = -1
        for tok in header.split("_"):
            if tok in ACTS:
                key, field, kind = "act", "act", str
                value: object = tok
            else:
                m = _TOKEN.match(tok)
                spec = next((h for h in HEADER_TOKENS if m and h[1] == m.group(1)), None)
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
