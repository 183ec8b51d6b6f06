"""Issue L, item 1: the extended block/architecture grammar.

Per-block activation, SE variants (gate, squeeze base, rounding, inner activation),
fused-MBConv (``fused``, pytorchcv's ``fusedp``), explicit expanded widths, the
MobileNetV3 head (``mix``), the classifier bias and the width-rounding rules:
round trips, strict errors naming the token, old op keys unchanged, and counts equal
to the built torch modules (parameters and a MAdds hook).
"""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from madds_hooks import hook_madds  # noqa: E402
from hypothesis import given, settings
from hypothesis import strategies as st

from space import count, parse_arch, parse_block
from space.arch import (ACTS, OPS, SE_BASES, SE_GATES, SKIPS, Arch, Block, LayerConfig, expand_for,
                        round_width, scale_width)
from space.blockstring import format_arch, format_block
from space.counting import layer_counts

REPO = Path(__file__).resolve().parents[1]

NEW_BLOCKS = [
    "r1_k5_s22_e3_i24_o40_m72_se0.25_sem_sed8_sehs_serelu_relu",
    "r1_k3_s11_e2_i80_o80_m184_hswish",
    "r2_k3_s22_e4_i32_o48_fused",
    "r1_k3_s11_e1_i32_o16_fused",
    "r1_k3_s11_e1_i32_o32_se0.25_fused_silu",
    "r1_k3_s22_e3_i32_o24_m96_noskip_fusedp",
    "r1_k3_s11_e1_i32_o32_irf_relu6",
    "r1_k1_s11_e1_i96_o576_se0.25_sem_sed8_sehs_serelu_noskip_conv_hswish",
    "r3_k5_s11_e6_i40_o40_se0.25_sehs",
    "r1_k3_s11_e6_i16_o16_se0.5_sed4_poolskip",
]
NEW_ARCHS = [
    "stem16_head960_hswish_mix1280:r1_k3_s11_e1_i16_o16_relu,"
    "r1_k5_s22_e5_i16_o40_m72_se0.25_sem_sed8_sehs_serelu_relu,r1_k3_s11_e6_i40_o160",
    "stem16_head960_hswish_mix1280_mixplain_nofcbias:r1_k3_s22_e4_i16_o24",
    "head576_cls1001_hswish_mix1024_mixbn:r1_k3_s22_e1_i32_o24_se0.25_sem_sed8_sehs",
    "relu6_nofcbias:r1_k3_s11_e1_i32_o16_irf,r2_k3_s22_e6_i16_o24",
    "stem24_head0_relu6_div8_drop0.0_in1_mix64:r1_k3_s22_e3_i24_o24_fused",
]


# -- round trips ----------------------------------------------------------------------
@pytest.mark.parametrize("text", NEW_BLOCKS)
def test_new_block_strings_round_trip(text):
    b = parse_block(text)
    assert format_block(b) == text
    assert parse_block(format_block(b)) == b


@pytest.mark.parametrize("text", NEW_ARCHS)
def test_new_arch_strings_round_trip(text):
    a = parse_arch(text)
    assert format_arch(a) == text
    assert parse_arch(str(a)) == a


@st.composite
def new_blocks(draw, in_ch=None):
    op = draw(st.sampled_from(OPS))
    cin = in_ch if in_ch is not None else draw(st.integers(1, 64))
    expand = 1 if op in ("conv", "skip") else draw(st.integers(1, 8))
    mid = 0
    if op in ("mbconv", "irf", "fused", "fusedp") and draw(st.booleans()):
        mid = draw(st.integers(1, 12 * cin))
        expand = expand_for(mid, cin)
    se = 0.0 if op == "skip" else draw(st.sampled_from([0.0, 0.25, 0.5]))
    se_kw = {}
    if se:
        se_kw = dict(se_base=draw(st.sampled_from(SE_BASES)), se_div=draw(st.sampled_from([1, 4, 8])),
                     se_gate=draw(st.sampled_from(SE_GATES)),
                     se_act=draw(st.sampled_from(("",) + ACTS)))
    return Block(repeats=draw(st.integers(1, 3)), kernel=draw(st.sampled_from([1, 3, 5, 7])),
                 stride=draw(st.sampled_from([1, 2])), expand=expand, in_ch=cin,
                 out_ch=draw(st.integers(1, 64)), se=se, skip=draw(st.sampled_from(SKIPS)),
                 op=op, mid_ch=mid, act=draw(st.sampled_from(("",) + ACTS)), **se_kw)


@settings(max_examples=200, deadline=None)
@given(new_blocks())
def test_block_round_trip_property(b):
    text = format_block(b)
    assert parse_block(text) == b
    assert format_block(parse_block(text)) == text


@st.composite
def new_archs(draw):
    stem = draw(st.integers(1, 32))
    blocks, cin = [], stem
    for _ in range(draw(st.integers(1, 3))):
        b = draw(new_blocks(in_ch=cin))
        blocks.append(b)
        cin = b.out_ch
    mix = draw(st.sampled_from([0, 0, 64]))
    return Arch(blocks=tuple(blocks), resolution=draw(st.sampled_from([32, 64])), stem_ch=stem,
                head_ch=draw(st.sampled_from([0, 96])), act=draw(st.sampled_from(ACTS)),
                mix_ch=mix, mix_norm=draw(st.sampled_from(("bias", "bn", "none"))) if mix else "bias",
                fc_bias=draw(st.booleans()), num_classes=draw(st.sampled_from([10, 1000])))


@settings(max_examples=150, deadline=None)
@given(new_archs())
def test_arch_round_trip_property(a):
    text = format_arch(a)
    assert parse_arch(text) == a
    assert format_arch(parse_arch(text)) == text


def test_block_act_equal_to_network_act_is_canonicalised():
    a = parse_arch("hswish:r1_k3_s11_e1_i32_o16_hswish,r1_k3_s22_e6_i16_o24_relu")
    assert str(a) == "hswish:r1_k3_s11_e1_i32_o16,r1_k3_s22_e6_i16_o24_relu"
    assert [lc.act for lc in a.layers()] == ["hswish", "relu"]


# -- strict validation ------------------------------------------------------------------
@pytest.mark.parametrize("text,needle", [
    ("r1_k3_s11_e6_i16_o24_sem", "'sem'"),                       # SE option without a ratio
    ("r1_k3_s11_e6_i16_o24_se0.25_sehs_sem", "'sem'"),          # out of order
    ("r1_k3_s11_e6_i16_o24_relu_noskip", "'noskip'"),           # act must come last
    ("r1_k3_s11_e6_i16_o24_gelu", "'gelu'"),                    # unknown token
    ("r1_k3_s11_e6_i16_o24_m40", "e3"),                         # e must be round(mid / in)
    ("r1_k3_s11_e1_i16_o24_m32_conv", "m32"),                   # conv has no expanded width
    ("r1_k3_s11_e6_i16_o24_se0.25_sed", "'sed'"),               # divisor missing
    ("r1_k3_s11_e6_i16_o24_se0.25_seswish", "'seswish'"),
    ("r1_k3_s11_e6_i16_o24_fused_g2", "groups"),
    ("r1_k3_s11_e6_i16_o24_m0x", "'m0x'"),
])
def test_block_errors_name_the_token(text, needle):
    with pytest.raises(ValueError) as err:
        parse_block(text)
    assert needle in str(err.value)


@pytest.mark.parametrize("text,needle", [
    ("mixbn:r1_k3_s11_e1_i32_o16", "mix"),                      # mixbn without a mix conv
    ("mix1280_hswish:r1_k3_s11_e1_i32_o16", "'hswish'"),        # header order
    ("nofcbias_mix1280:r1_k3_s11_e1_i32_o16", "'mix1280'"),
    ("mixfoo:r1_k3_s11_e1_i32_o16", "'mixfoo'"),
])
def test_header_errors_name_the_token(text, needle):
    with pytest.raises(ValueError) as err:
        parse_arch(text)
    assert needle in str(err.value)


# -- the op ids of every shipped latency table are unchanged ---------------------------
def _table_rows():
    for path in sorted((REPO / "data" / "latency_tables").glob("**/*_ops.csv")):
        with open(path, newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                yield path, i, row


def test_shipped_table_keys_unchanged():
    from surrogate.predict.oplevel import row_to_config

    n = 0
    for path, i, row in _table_rows():
        lc = row_to_config(row)
        assert lc.key() == row["op_key"], f"{path.name}:{i + 2}"
        n += 1
    assert n > 1000


def test_space_layer_keys_unchanged_by_new_defaults():
    """Every op of every space that predates the new forms has no new key part (defaults
    add nothing); the OFA MobileNetV3 spaces use them by design."""
    from space import get_space, space_names

    new_parts = ("_m", "_sem", "_sed", "_sehs", "mix", "nofcbias", "fused")
    old_spaces = [n for n in space_names() if not n.startswith("ofa-")]
    assert {"mnasnet", "mnasnet-paper", "anb", "fbnet", "nasbench-macro"} <= set(old_spaces)
    for name in old_spaces:
        sp = get_space(name)
        for lc in sp.operator_configs():
            k = lc.key()
            assert not any(p in k for p in new_parts), (name, k)


# -- width rules -------------------------------------------------------------------------
def test_width_rules():
    assert [round_width(c, 0.75, "tf") for c in (32, 16, 24, 1280)] == [24, 16, 24, 960]
    assert [round_width(c, 0.75, "trunc") for c in (32, 16, 24, 1280)] == [24, 12, 18, 960]
    assert [round_width(c, 0.25, "trunc") for c in (32, 16, 24)] == [8, 4, 6]
    with pytest.raises(ValueError, match="width rule"):
        round_width(8, 0.5, "floor")
    a = parse_arch("hswish:r1_k3_s22_e4_i32_o24_m120")
    b = scale_width(a, 0.5)
    assert b.blocks[0].mid_ch == 64 and b.blocks[0].in_ch == 16 and b.blocks[0].expand == 4


# -- counts equal the built modules -------------------------------------------------------
torch = pytest.importorskip("torch")


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("text", NEW_BLOCKS)
def test_new_layers_count_like_torch(text):
    from space.build import build_layer, op_input_shape

    b = parse_block(text)
    a = Arch(blocks=(b,), stem_ch=b.in_ch, resolution=64)
    for lc in a.layers():
        m = build_layer(lc)
        c = layer_counts(lc)
        assert _params(m) == c.params, text
        assert hook_madds(m, op_input_shape(lc)) == c.madds, text
        out = m(torch.zeros(op_input_shape(lc)))
        assert tuple(out.shape[1:]) == (lc.out_ch, lc.out_h, lc.out_w)


@pytest.mark.parametrize("text", NEW_ARCHS)
def test_new_archs_count_like_torch(text):
    from space.build import build_model, input_shape

    a = parse_arch(text)
    m = build_model(a)
    c = count(a)
    assert _params(m) == c.params
    assert hook_madds(m, input_shape(a)) == c.madds
    assert m(torch.zeros(input_shape(a))).shape == (1, a.num_classes)


@settings(max_examples=25, deadline=None)
@given(new_archs())
def test_random_new_archs_count_like_torch(a):
    from space.build import build_model, input_shape

    m = build_model(a)
    c = count(a)
    assert _params(m) == c.params
    assert hook_madds(m, input_shape(a)) == c.madds


def test_modules_of_new_forms():
    from torch import nn

    from space import modules as P
    from space.build import build_layer, build_model

    lc = parse_arch("stem24_hswish:r1_k5_s22_e3_i24_o40_m72_se0.25_sem_sed8_sehs_serelu").layers()[0]
    layer = build_layer(lc)
    se = [m for m in layer.modules() if isinstance(m, P.HardSqueezeExcite)]
    assert len(se) == 1 and isinstance(se[0].gate, nn.Hardsigmoid) and isinstance(se[0].act, nn.ReLU)
    assert se[0].reduce.out_channels == 24  # make_divisible(72 / 4, 8)
    assert any(isinstance(m, nn.Hardswish) for m in layer.body.modules())
    fp = build_layer(parse_arch("r1_k3_s22_e3_i32_o24_m96_noskip_fusedp").layers()[0])
    convs = [m for m in fp.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2)] and convs[0].kernel_size == (3, 3)
    net = build_model(parse_arch(NEW_ARCHS[1]))
    assert isinstance(net.head, P.MixHead) and net.head.classifier.bias is None
    assert net.head.mix[0].bias is None and len(net.head.mix) == 2
    sd = net.state_dict()
    assert "head.mix.0.weight" in sd and "classifier.weight" in sd
    net.load_state_dict(sd)


def test_layer_config_defaults_are_old_layer():
    old = LayerConfig(op="mbconv", h=14, w=14, in_ch=16, out_ch=16, kernel=3, stride=1, expand=3,
                      se=0.25, skip="identity", groups=1, act="relu")
    assert old.key() == "mbconv_i14x14x16_o14x14x16_k3_s1_e3_se0.25_res-add_g1_relu"
    assert old.se_ch == 4 and old.mid_ch == 48


# -- operator keys parse back (the ofa-mbv3 table's rows are rebuilt from their keys) ----------
def test_every_operator_key_parses_back():
    from space import get_space
    from space.blockstring import parse_op_key
    from space.reference import REFERENCE

    configs = set(get_space("ofa-mbv3").operator_configs()) | set(get_space("mnasnet").operator_configs())
    for a in REFERENCE.values():
        configs |= {lc for lc in a.ops() if not lc.is_identity}
    assert any(lc.mix_ch for lc in configs) and any(lc.se_gate == "hsigmoid" for lc in configs)
    assert any(lc.op in ("fused", "fusedp") for lc in configs) and any(lc.mid for lc in configs)
    for lc in configs:
        back = parse_op_key(lc.key())
        assert back.key() == lc.key(), lc.key()


@pytest.mark.parametrize("key, part", [
    ("mbconv_i8x8x16_o8x8x16_k3_s1_e3_se0_res-add_g1_relu_zz", "'zz'"),
    ("mbconv_i8x8x16_o8x8x16_k3_s1", "expected"),
    ("head_i7x7x160_o1x1x960_k1_s1_hswish_cls1000_mix1280-purple", "'mix1280-purple'"),
    ("mbconv_i8x8x16_o8x8x16_k3_s1_e3_se0_res-add_g1_relu_sehs", "does not describe"),
])
def test_bad_operator_keys_name_the_key(key, part):
    from space.blockstring import parse_op_key

    with pytest.raises(ValueError, match="operator key") as err:
        parse_op_key(key)
    assert part in str(err.value) and key in str(err.value)
