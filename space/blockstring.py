"""Parse block strings and architecture strings (printing lives in :mod:`space.arch`).

Block strings follow the authors' release, ``r{repeats}_k{kernel}_s{s}{s}_e{expand}
_i{in}_o{out}[_m{mid}][_se{ratio}[_sem][_sed{d}][_sehs][_se{act}]][_noskip|_poolskip]
[_irf|_conv|_skip|_fused|_fusedp][_g{groups}][_{act}]``: the six leading tokens in
that order, then optional tokens in that order (see :mod:`space.arch` for their
meaning), e.g. MobileNetV3-Large's fifth layer
``r1_k5_s22_e3_i24_o40_m72_se0.25_sem_sed8_sehs_serelu_relu``.

An architecture string is an optional header of non-default settings, a colon, and
the block strings joined by commas::

    res192_silu_div8:r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24

Header tokens (defaults in brackets): ``res`` [224], ``stem`` [32], ``stemk`` [3],
``stems`` [2], ``head`` [1280], ``cls`` [1000], an activation ``relu|relu6|silu|
hswish`` [relu], ``div`` [1], ``drop`` [0.2], ``in`` [3], ``mix`` [0: no MobileNetV3
mix conv], ``mixbn|mixplain`` [the mix conv has a bias], ``nofcbias`` [the classifier
has a bias]. With every setting at
its default the header and colon are left out, so an authors' block list is itself
a valid architecture string. Printing is canonical: ``format(parse(s)) == s`` for
every string :func:`format_arch` prints, and ``parse(format(x)) == x`` for every
object. The token tables and the printers are defined beside the classes in
:mod:`space.arch` (so ``str(arch)`` needs no import from here); this module reads
the same tables and re-exports the printers, so parse and print cannot drift.
"""
from __future__ import annotations

import re

from .arch import (ACTS, HEADER_FLAGS, HEADER_TOKENS, OP_TOKENS, SE_TOKENS, SKIP_TOKENS, Arch,
                   Block, LayerConfig, format_arch, format_block)

__all__ = ["format_arch", "format_block", "parse_arch", "parse_block"]

_NUM = re.compile(r"^(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_TOKEN = re.compile(r"^([a-z]+)(.*)$")

_LEADING = ("r", "k", "s", "e", "i", "o")
_LEADING_HELP = "r{repeats}_k{kernel}_s{stride}{stride}_e{expand}_i{in}_o{out}"
_OPTIONAL_ORDER = ("m", "se", "sem", "sed", "sehs", "seact", "skip", "op", "g", "act")
_OPTIONAL_HELP = ("m<mid>, se<ratio>, sem, sed<d>, sehs, se<act>, noskip|poolskip, "
                  "irf|conv|skip|fused|fusedp, g<groups>, " + "|".join(ACTS))
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
        elif tok in ACTS:
            slot, key, value = "act", "act", tok
        elif tok in SE_TOKENS:
            slot, (key, value) = tok, SE_TOKENS[tok]
        elif tok.startswith("sed") and tok[3:4].isdigit():
            slot, key, value = "sed", "se_div", _int(tok, tok[3:], "the SE rounding divisor")
        elif tok.startswith("se") and tok[2:] in ACTS:
            slot, key, value = "seact", "se_act", tok[2:]
        elif tok.startswith("se") and len(tok) > 2 and (tok[2].isdigit()):
            slot, key, value = "se", "se", _float(tok, tok[2:], "the SE ratio")
        elif tok.startswith("m") and tok[1:2].isdigit():
            slot, key, value = "m", "mid_ch", _int(tok, tok[1:], "the expanded width")
        elif tok.startswith("g") and tok[1:2].isdigit():
            slot, key, value = "g", "groups", _int(tok, tok[1:], "the group count")
        else:
            raise ValueError(
                f"bad token {tok!r} in block {text!r}: expected one of {_OPTIONAL_HELP}"
            )
        pos = _OPTIONAL_ORDER.index(slot)
        if pos <= last:
            raise ValueError(
                f"token {tok!r} in block {text!r} is repeated or out of order: "
                f"optional tokens go {_OPTIONAL_HELP}"
            )
        if slot in ("sem", "sed", "sehs", "seact") and "se" not in kw:
            raise ValueError(f"token {tok!r} in block {text!r} needs an SE ratio se<ratio> before it")
        last = pos
        kw[key] = value
    try:
        return Block(repeats=vals["r"], kernel=vals["k"], stride=vals["s"], expand=vals["e"],
                     in_ch=vals["i"], out_ch=vals["o"], **kw)
    except ValueError as exc:
        raise ValueError(f"block {text!r}: {exc}") from None


def _header_help_part(field: str, tok: str | None, kind: object) -> str:
    if field == "act":
        return "|".join(ACTS)
    if tok is None:
        return "|".join(t for t, (f, _) in HEADER_FLAGS.items() if f == field)
    return f"{tok}<{kind.__name__}>"


_HEADER_HELP = ", ".join(_header_help_part(*h) for h in HEADER_TOKENS)


def parse_arch(text: str) -> Arch:
    """Parse an architecture string (optional header, ``:``, comma-separated blocks)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty architecture string")
    text = text.strip()
    header, _, body = text.rpartition(":")
    kw: dict = {}
    if header:
        order = [h[0] for h in HEADER_TOKENS]
        last = -1
        for tok in header.split("_"):
            if tok in ACTS:
                field = "act"
                value: object = tok
            elif tok in HEADER_FLAGS:
                field, value = HEADER_FLAGS[tok]
            else:
                m = _TOKEN.match(tok)
                spec = next((h for h in HEADER_TOKENS if m and h[1] == m.group(1)), None)
                if spec is None:
                    raise ValueError(f"bad header token {tok!r} in {text!r}: expected {_HEADER_HELP}")
                field, kind = spec[0], spec[2]
                body_txt = m.group(2)
                value = (_float(tok, body_txt, field) if kind is float
                         else _int(tok, body_txt, field))
            pos = order.index(field)
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


_LAYER_OPS = ("mbconv", "irf", "conv", "fused", "fusedp")
_RESIDUAL_SKIP = {"add": "identity", "pool": "pool", "none": "none"}


def parse_op_key(key: str) -> LayerConfig:
    """The :class:`LayerConfig` of an operator key (:meth:`LayerConfig.key`, the op id of
    every latency table), the issue-L extensions (``m<mid>``, ``sem``, ``sed<d>``,
    ``sehs``, ``se<act>``, ``mix<n>-<norm>``, ``nofcbias``) included.

    ``ValueError`` names the key when it is malformed, or when no configuration prints
    exactly that key (e.g. a key written by another version of the library).
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"operator key {key!r}: expected <op>_i<h>x<w>x<in>_o..._k<k>_s<s>..._<act>")
    toks = key.split("_")
    bad = ValueError(f"operator key {key!r}: expected <op>_i<h>x<w>x<in>_o<h>x<w>x<out>_k<k>_s<s>"
                     f"[_e<e>_se<r>_res-<residual>_g<g>]_<act>[...]")
    m_in = re.fullmatch(r"i(\d+)x(\d+)x(\d+)", toks[1]) if len(toks) > 5 else None
    m_out = re.fullmatch(r"o\d+x\d+x(\d+)", toks[2]) if m_in else None
    m_k = re.fullmatch(r"k(\d+)", toks[3]) if m_out else None
    m_s = re.fullmatch(r"s(\d+)", toks[4]) if m_k else None
    if m_s is None:
        raise bad
    op = toks[0]
    kw: dict = {"op": op, "h": int(m_in[1]), "w": int(m_in[2]), "in_ch": int(m_in[3]),
                "out_ch": int(m_out[1]), "kernel": int(m_k[1]), "stride": int(m_s[1]),
                "expand": 1, "se": 0.0, "skip": "none", "groups": 1}
    rest = toks[5:]
    if op in _LAYER_OPS:
        if len(rest) < 5:
            raise bad
        m_e = re.fullmatch(r"e(\d+)", rest[0])
        m_se = re.fullmatch(r"se([0-9.e+-]+)", rest[1])
        m_g = re.fullmatch(r"g(\d+)", rest[3])
        res = rest[2][4:] if rest[2].startswith("res-") else None
        if not (m_e and m_se and m_g) or res not in _RESIDUAL_SKIP:
            raise bad
        kw.update(expand=int(m_e[1]), se=float(m_se[1]), skip=_RESIDUAL_SKIP[res], groups=int(m_g[1]))
        rest = rest[4:]
    if not rest:
        raise bad
    kw["act"], rest = rest[0], rest[1:]
    for tok in rest:
        if (m := re.fullmatch(r"div(\d+)", tok)):
            kw["expand_divisor"] = int(m[1])
        elif (m := re.fullmatch(r"cls(\d+)", tok)):
            kw["num_classes"] = int(m[1])
        elif (m := re.fullmatch(r"mix(\d+)-(bias|bn|none)", tok)):
            kw["mix_ch"], kw["mix_norm"] = int(m[1]), m[2]
        elif tok == "nofcbias":
            kw["fc_bias"] = False
        elif (m := re.fullmatch(r"m(\d+)", tok)):
            kw["mid"] = int(m[1])
        elif tok == "sem":
            kw["se_base"] = "mid"
        elif (m := re.fullmatch(r"sed(\d+)", tok)):
            kw["se_div"] = int(m[1])
        elif tok == "sehs":
            kw["se_gate"] = "hsigmoid"
        elif tok.startswith("se") and tok[2:] in ACTS:
            kw["se_act"] = tok[2:]
        else:
            raise ValueError(f"operator key {key!r}: unknown part {tok!r}")
    try:
        lc = LayerConfig(**kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"operator key {key!r}: {exc}") from None
    if lc.key() != key:
        raise ValueError(f"operator key {key!r} does not describe a known operator configuration")
    return lc
