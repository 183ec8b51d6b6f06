"""Block and architecture strings: authors' strings, round trips, strict errors."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from space import Arch, Block, format_arch, format_block, parse_arch, parse_block
from space.arch import ACTS, OPS, SKIPS

AUTHORS = [
    "r1_k3_s11_e1_i32_o16_noskip", "r2_k3_s22_e6_i16_o24", "r3_k5_s22_e3_i24_o40_se0.25",
    "r4_k3_s22_e6_i40_o80", "r2_k3_s11_e6_i80_o112_se0.25", "r3_k5_s22_e6_i112_o160_se0.25",
    "r1_k3_s11_e6_i160_o320", "r5_k7_s11_e3_i96_o96", "r1_k7_s11_e6_i80_o320_noskip",
    "r3_k3_s22_e9_i24_o36",
]


@pytest.mark.parametrize("text", AUTHORS)
def test_authors_strings_round_trip(text):
    b = parse_block(text)
    assert format_block(b) == text


def test_fields_decoded():
    b = parse_block("r3_k5_s22_e3_i24_o40_se0.25_noskip")
    assert (b.repeats, b.kernel, b.stride, b.expand, b.in_ch, b.out_ch) == (3, 5, 2, 3, 24, 40)
    assert b.se == 0.25 and b.skip == "none" and b.op == "mbconv" and b.groups == 1


def test_extended_tokens():
    b = parse_block("r1_k5_s11_e1_i24_o24_poolskip_irf_g2")
    assert (b.skip, b.op, b.groups) == ("pool", "irf", 2)
    assert format_block(b) == "r1_k5_s11_e1_i24_o24_poolskip_irf_g2"
    assert parse_block("r1_k3_s22_e1_i16_o24_conv").op == "conv"
    assert parse_block("r1_k1_s22_e1_i16_o24_skip").op == "skip"


@pytest.mark.parametrize("text, token", [
    ("r1_k4_s11_e1_i32_o16", "kernel"),
    ("r1_k3_s12_e1_i32_o16", "s12"),
    ("r1_k3_s11_e1_i32_o16_nosk", "nosk"),
    ("r1_k3_s11_x1_i32_o16", "x1"),
    ("r0_k3_s11_e1_i32_o16", "repeats"),
    ("r1_k3_s11_e1_i32", "too short"),
    ("r1_k3_s11_e1_i32_o16_se1.5", "se"),
    ("r1_k3_s11_e1_i32_o16_noskip_se0.25", "out of order"),
    ("r1_k3_s11_e3_i32_o16_conv", "conv"),
    ("r1_k3_s11_e1_i32_o16_g2", "groups"),
    ("r01_k3_s11_e1_i32_o16", "r01"),
])
def test_bad_strings_name_the_token(text, token):
    with pytest.raises(ValueError, match=token):
        parse_block(text)


def test_arch_header_and_chain_validation():
    a = parse_arch("res192_silu_div8:r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24")
    assert a.resolution == 192 and a.act == "silu" and a.expand_divisor == 8
    assert format_arch(a) == "res192_silu_div8:r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24"
    with pytest.raises(ValueError, match="in_ch 24"):
        parse_arch("r1_k3_s11_e1_i32_o16,r1_k3_s11_e1_i24_o24")
    with pytest.raises(ValueError, match="bogus"):
        parse_arch("bogus7:r1_k3_s11_e1_i32_o16")
    with pytest.raises(ValueError, match="resolution"):
        parse_arch("res4:r1_k3_s22_e1_i32_o16")


def test_arch_is_frozen_hashable_and_replace_copies():
    a = parse_arch(",".join(AUTHORS[:7]))
    assert hash(a) == hash(parse_arch(format_arch(a)))
    with pytest.raises(Exception):
        a.resolution = 100  # type: ignore[misc]
    b = a.replace(resolution=160)
    assert a.resolution == 224 and b.resolution == 160


@st.composite
def blocks(draw, in_ch=None):
    op = draw(st.sampled_from(OPS))
    groups = draw(st.sampled_from([1, 2])) if op == "irf" else 1
    cin = in_ch if in_ch is not None else draw(st.integers(1, 64)) * groups
    if groups > 1 and cin % groups:
        groups = 1
    expand = 1 if op in ("conv", "skip") else draw(st.integers(1, 12))
    se = 0.0 if op == "skip" else draw(st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]))
    return Block(
        repeats=draw(st.integers(1, 6)), kernel=draw(st.sampled_from([1, 3, 5, 7])),
        stride=draw(st.sampled_from([1, 2])), expand=expand, in_ch=cin,
        out_ch=draw(st.integers(1, 64)) * groups, se=se, skip=draw(st.sampled_from(SKIPS)),
        op=op, groups=groups,
    )


@given(blocks())
def test_block_round_trip(b):
    text = format_block(b)
    assert parse_block(text) == b
    assert format_block(parse_block(text)) == text


@st.composite
def archs(draw):
    stem = draw(st.integers(1, 48)) * 2
    n = draw(st.integers(1, 5))
    bl, cin = [], stem
    for _ in range(n):
        b = draw(blocks(in_ch=cin))
        bl.append(b)
        cin = b.out_ch
    return Arch(blocks=tuple(bl), resolution=draw(st.sampled_from([64, 96, 160, 224])),
                stem_ch=stem, head_ch=draw(st.sampled_from([0, 1280, 1504])),
                num_classes=draw(st.sampled_from([10, 100, 1000])), act=draw(st.sampled_from(ACTS)),
                expand_divisor=draw(st.sampled_from([1, 8])), dropout=draw(st.sampled_from([0.0, 0.2, 0.3])),
                stem_stride=draw(st.sampled_from([1, 2])))


@settings(max_examples=200)
@given(archs())
def test_arch_round_trip(a):
    text = format_arch(a)
    assert parse_arch(text) == a
    assert format_arch(parse_arch(text)) == text
