"""Exact params/MAdds of the reference registry; the torch builder agrees."""
from __future__ import annotations

import pytest

from space import REFERENCE, count, get_reference, resolve_arch

# (params, MAdds rounded to 0.1M) from SPEC section 1
EXPECTED = {
    "mnasnet-a1": (3_887_038, 311.6),
    "mnasnet-b1": (4_383_312, 314.4),
    "mnasnet-b1-0.5": (2_218_512, 104.5),
    "mnasnet-b1-0.75": (3_170_208, 215.5),
    "mnasnet-b1-1.3": (6_282_256, 526.4),
    "mobilenetv2-1.0": (3_504_872, 300.8),
    "efficientnet-b0": (5_288_548, 385.8),  # torchvision efficientnet_b0
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_counts_exact(name):
    params, madds_m = EXPECTED[name]
    c = count(get_reference(name))
    assert c.params == params
    assert round(c.madds / 1e6, 1) == madds_m


def test_mnasnet_small_matches_release():
    # The release's mnasnet-small: 2.0M params / 68M MAdds. SPEC's table gives
    # 2,030,416 / 70.0M, 152 params and ~1.7M MAdds more than the release's stages.
    c = count(get_reference("mnasnet-small"))
    assert c.params == 2_030_264
    assert round(c.madds / 1e6) == 68


def test_registry_has_required_families():
    for w in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        for r in (96, 128, 160, 192, 224):
            name = f"mobilenetv2-{w}" + ("" if r == 224 else f"-{r}")
            assert REFERENCE[name].resolution == r
    assert {"mnasnet-d1", "mnasnet-small", "efficientnet-b0"} <= set(REFERENCE)
    # MobileNetV2 x1.4 scales the head (1792), MnasNet-B1 x1.3 does not (1280)
    assert REFERENCE["mobilenetv2-1.4"].head_ch == 1792
    assert REFERENCE["mnasnet-b1-1.3"].head_ch == 1280


def test_resolution_changes_madds_not_params():
    a, b = get_reference("mobilenetv2-1.0"), get_reference("mobilenetv2-1.0-160")
    assert count(a).params == count(b).params
    assert count(b).madds < count(a).madds


def test_resolve_errors():
    with pytest.raises(ValueError, match="unknown architecture name 'mnasnet-zz'"):
        resolve_arch("mnasnet-zz")
    with pytest.raises(ValueError, match="empty"):
        resolve_arch("  ")


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["mnasnet-a1", "mnasnet-b1-0.5", "mnasnet-small", "mnasnet-d1",
                                  "mobilenetv2-0.35-96", "efficientnet-b0"])
def test_builder_param_count_and_forward(name):
    from space.build import build_model, input_shape

    a = get_reference(name)
    m = build_model(a)
    assert sum(p.numel() for p in m.parameters()) == count(a).params
    with torch.inference_mode():
        y = m(torch.randn(*input_shape(a, 2)))
    assert y.shape == (2, a.num_classes) and torch.isfinite(y).all()


def test_builder_every_op_kind_counts_match():
    from space import parse_arch
    from space.build import build_model

    a = parse_arch("res64_stem16:r2_k3_s22_e1_i16_o24_poolskip_irf_g2,r2_k5_s11_e1_i24_o32_se0.25_conv,"
                   "r1_k1_s22_e1_i32_o48_skip,r2_k7_s11_e4_i48_o48_se0.5_poolskip")
    m = build_model(a)
    assert sum(p.numel() for p in m.parameters()) == count(a).params
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_model_traces_and_exports():
    """No data-dependent Python control flow: torch.export captures one graph."""
    from space.build import build_model

    a = get_reference("mnasnet-a1").replace(resolution=96)
    m = build_model(a)
    x = torch.randn(1, 3, 96, 96)
    ep = torch.export.export(m, (x,))
    torch.testing.assert_close(ep.module()(x), m(x))
    traced = torch.jit.trace(m, x)
    torch.testing.assert_close(traced(x), m(x))


def test_every_conv_is_followed_by_bn():
    """BN folds at conversion: each bias-free conv is directly followed by its BN."""
    from torch import nn

    from space.build import build_model

    m = build_model(get_reference("mnasnet-a1"))
    for mod in m.modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.children())
            for i, k in enumerate(kids):
                if isinstance(k, nn.Conv2d) and k.bias is None:
                    assert isinstance(kids[i + 1], nn.BatchNorm2d)
                    assert kids[i + 1].momentum == 0.01 and kids[i + 1].eps == 1e-3


def test_build_is_deterministic_without_touching_global_rng():
    from space.build import build_model

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(get_reference("mnasnet-small"))
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_model(get_reference("mnasnet-small"))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
