"""The Once-for-All MobileNetV3 spaces (``ofa-mbv3``, ``ofa-mbv3-w1.2``): decoding, canonical
form, encodings, operators, counts, and membership of OFA's specialized subnets."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from space import count, get_reference, get_space
from space.arch import make_divisible
from space.spaces.ofa import (DEPTHS, EXPANDS, KERNELS, RESOLUTIONS, OFAMobileNetV3Space)

REPO = Path(__file__).resolve().parents[1]
NAMES = ("ofa-mbv3", "ofa-mbv3-w1.2")


def _reference_dir() -> Path:
    env = os.environ.get("MNAS_REFERENCE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def _max_idx(sp) -> list[int]:
    return [len(sp.resolutions) - 1] + ([2] + [2, 2] * 4) * 5


# -- definition ---------------------------------------------------------------------------
def test_definition_follows_ofa():
    assert RESOLUTIONS == tuple(range(128, 225, 4)) and len(RESOLUTIONS) == 25
    for name, stem, stages, head, mix in (("ofa-mbv3", 16, (24, 40, 80, 112, 160), 960, 1280),
                                          ("ofa-mbv3-w1.2", 24, (32, 48, 96, 136, 192), 1152,
                                           1536)):
        sp = get_space(name)
        assert (sp.stem_ch, sp.first_ch, sp.stage_widths) == (stem, stem, stages)
        assert sp.n_decisions == 1 + 5 * 9
        a = sp.to_arch(_max_idx(sp))
        assert (a.resolution, a.stem_ch, a.head_ch, a.mix_ch, a.mix_norm, a.act) == \
            (224, stem, head, mix, "none", "hswish")
        layers = a.layers()
        assert len(layers) == 1 + 20
        first = layers[0]
        assert (first.kernel, first.expand, first.act, first.se, first.residual) == \
            (3, 1, "relu", 0.0, "add")
        strides = [lc.stride for lc in layers[1:]]
        assert strides == [2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
        acts = [lc.act for lc in layers[1:]]
        assert acts == ["relu"] * 8 + ["hswish"] * 12
        se = [lc.se > 0 for lc in layers[1:]]
        assert se == [False] * 4 + [True] * 4 + [False] * 4 + [True] * 8
        for lc in layers[1:]:
            assert lc.mid_ch == lc.in_ch * 6 and lc.kernel == 7
            if lc.se:  # SEModule: make_divisible(mid // 4, 8), ReLU, h-sigmoid
                assert (lc.se_ch, lc.se_inner_act, lc.se_gate) == \
                    (make_divisible(lc.mid_ch // 4, 8), "relu", "hsigmoid")
            assert lc.residual == ("add" if lc.stride == 1 and lc.in_ch == lc.out_ch else "none")
    with pytest.raises(ValueError, match="width_mult"):
        OFAMobileNetV3Space(1.3)


def test_size_and_distinct_networks():
    sp = get_space("ofa-mbv3")
    assert sp.size == 25 * (3 * 9 ** 4) ** 5
    assert sp.n_networks == 25 * (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5  # > 10^19 per resolution
    assert sp.n_networks // 25 > 10 ** 19
    with pytest.raises(ValueError, match="enumerate"):
        next(iter(sp.enumerate()))


# -- round trips, encodings, canonical form -----------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_round_trips_and_encodings(name):
    sp = get_space(name)
    rng = np.random.default_rng(0)
    idx = sp.sample_indices(rng, 64)
    for row in idx:
        a = sp.to_arch(row)
        assert sp.from_arch(a) == tuple(row)
        assert sp.from_ofa_config(sp.to_ofa_config(row)) == tuple(row)
    assert (sp.from_onehot(sp.onehot(idx)) == idx).all()
    assert (sp.from_ordinal(sp.ordinal(idx)) == idx).all()
    assert sp.onehot(idx).shape == (64, 25 + 5 * (3 + 8 * 3))


def test_canonical_form_ignores_layers_beyond_depth():
    sp = get_space("ofa-mbv3")
    rng = np.random.default_rng(1)
    raw = np.stack([rng.integers(0, d.n, size=200) for d in sp.decisions], axis=1)
    for row in raw:
        c = sp.canonical(row)
        assert sp.canonical(c) == c and sp.to_arch(row) == sp.to_arch(c)
        cfg = sp.to_ofa_config(c)
        for s, d in enumerate(cfg["d"]):
            assert cfg["ks"][4 * s + d:4 * s + 4] == [3] * (4 - d)
            assert cfg["e"][4 * s + d:4 * s + 4] == [3] * (4 - d)
        m = sp.mutate(c, rng)
        assert sp.to_arch(m) != sp.to_arch(c)
    # the same depth-2 stage with different hidden layer-3/4 choices is one network
    a = [0] + [0, 0, 0, 0, 0, 1, 1, 2, 2] * 5
    b = [0] + [0, 0, 0, 0, 0, 2, 2, 0, 1] * 5
    assert sp.canonical(a) == sp.canonical(b) and sp.to_arch(a) == sp.to_arch(b)
    assert sp.canonical(a)[1:10] == (0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert len(sp.to_arch(a).layers()) == 1 + 10


def test_from_arch_names_what_is_outside():
    sp = get_space("ofa-mbv3")
    a = sp.to_arch(_max_idx(sp))
    with pytest.raises(ValueError, match="resolution 232"):
        sp.from_arch(a.replace(resolution=232))
    with pytest.raises(ValueError, match="stage 1 .* 5 layers"):
        extra = a.blocks[1].replace(in_ch=24, stride=1)
        sp.from_arch(a.replace(blocks=a.blocks[:2] + (extra,) + a.blocks[2:]))
    with pytest.raises(ValueError, match="mix_norm"):
        sp.from_arch(a.replace(mix_norm="bn"))
    with pytest.raises(ValueError, match="layer 3 "):  # SE where the supernet has none
        b2 = a.blocks[2].replace(se=0.25, se_base="mid", se_div=8, se_gate="hsigmoid",
                                 se_act="relu")
        sp.from_arch(a.replace(blocks=a.blocks[:2] + (b2,) + a.blocks[3:]))
    with pytest.raises(ValueError, match="not in space 'ofa-mbv3'"):
        sp.from_arch(get_reference("mobilenetv3-large-1.0"))
    with pytest.raises(ValueError, match="ks, e, d"):
        sp.from_ofa_config({"ks": [3] * 20})
    with pytest.raises(ValueError, match="d 5"):
        sp.from_ofa_config({"ks": [3] * 20, "e": [3] * 20, "d": [5] * 5, "image_size": 224})


# -- operators and counts -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_operator_configs_cover_sampled_members(name):
    sp = get_space(name)
    ops = sp.operator_configs()
    keys = {lc.key() for lc in ops}
    assert len(keys) == len(ops) == 1251  # 93 per resolution, shared sizes merged
    assert all(len(sp.operator_configs([r])) == 93 for r in (128, 176, 224))
    assert sum(lc.op == "stem" for lc in ops) == 25 and sum(lc.op == "head" for lc in ops) == 4
    rng = np.random.default_rng(2)
    for row in sp.sample_indices(rng, 200):  # sampling draws the resolution too
        for lc in sp.to_arch(row).ops():
            assert lc.key() in keys, lc.key()
    with pytest.raises(ValueError, match="resolution 100"):
        sp.operator_configs([100])


def test_published_flops_of_specialized_subnets():
    """OFA names three subnets by their MACs; our MAdds round to them (595M is at 236 px)."""
    for name, mflops in (("flops-389M_top1-79.1_finetune-75", 389),
                         ("flops-482M_top1-79.6_finetune-75", 482),
                         ("flops-595M_top1-80.0_finetune-75", 595)):
        assert round(count(get_reference(name)).madds / 1e6) == mflops, name


def test_max_subnet_counts():
    """No published figure for the full supernet was found (OFA's README and paper give
    subnets only); these are the exact counts, checked against the built model below."""
    for name, params, madds in (("ofa-mbv3", 7_664_760, 566_170_656),
                                ("ofa-mbv3-w1.2", 10_701_632, 843_101_040)):
        sp = get_space(name)
        c = sp.count(_max_idx(sp))
        assert (c.params, c.madds) == (params, madds), name


def test_counts_equal_built_modules():
    torch = pytest.importorskip("torch")
    from space.build import build_model

    rng = np.random.default_rng(3)
    for name in NAMES:
        sp = get_space(name)
        rows = [_max_idx(sp)] + list(sp.sample_indices(rng, 2))
        for row in rows:
            a = sp.to_arch(row)
            m = build_model(a)
            assert sum(p.numel() for p in m.parameters()) == count(a).params
        with torch.no_grad():
            out = build_model(sp.to_arch(rows[1])).eval()(torch.zeros(1, 3, 128, 128))
        assert out.shape == (1, 1000)


# -- OFA's specialized subnets -----------------------------------------------------------
def _ofa_configs():
    p = _reference_dir() / "ofa_specialized.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent (set MNAS_REFERENCE_DIR)")
    return json.loads(p.read_text())


def test_specialized_subnets_are_members():
    from space.reference_ofa import ofa_arch_from_config

    cfgs = _ofa_configs()
    wide = {w: OFAMobileNetV3Space(w, resolutions=range(128, 261, 4)) for w in (1.0, 1.2)}
    seen = {"ofa-mbv3": 0, "ofa-mbv3-w1.2": 0, "outside": 0, "proxyless": 0}
    for cfg in cfgs:
        a = ofa_arch_from_config(cfg)
        if cfg["net"] != "MobileNetV3":  # ProxylessNAS-based: another supernet
            seen["proxyless"] += 1
            for name in NAMES:
                with pytest.raises(ValueError, match="not in space"):
                    get_space(name).from_arch(a)
            continue
        w = {16: 1.0, 24: 1.2}[cfg["stem"]["out"]]
        sp = get_space("ofa-mbv3" if w == 1.0 else "ofa-mbv3-w1.2")
        if cfg["image_size"] in RESOLUTIONS:
            assert sp.to_arch(sp.from_arch(a)) == a, cfg["name"]
            seen[sp.name] += 1
        else:  # fine-tuned at a size beyond OFA's training range
            with pytest.raises(ValueError, match=f"resolution {cfg['image_size']}"):
                sp.from_arch(a)
            assert wide[w].to_arch(wide[w].from_arch(a)) == a, cfg["name"]
            seen["outside"] += 1
        # the structure is OFA's sub-network dict
        c = sp.from_arch(a.replace(resolution=224))
        ofa = sp.to_ofa_config(c)
        assert sum(ofa["d"]) == len(cfg["blocks"]) - 1
        active = [i for s in range(5) for i in range(4 * s, 4 * s + ofa["d"][s])]
        assert [ofa["ks"][i] for i in active] == [b["k"] for b in cfg["blocks"][1:]]
        assert [ofa["e"][i] for i in active] == [b["e"] for b in cfg["blocks"][1:]]
    assert seen == {"ofa-mbv3": 8, "ofa-mbv3-w1.2": 6, "outside": 4, "proxyless": 16}


def test_space_choices_are_the_encoders():
    # MobileNetArchEncoder defaults: ks [3, 5, 7], expand [3, 4, 6], depth [2, 3, 4]
    assert (KERNELS, EXPANDS, DEPTHS) == ((3, 5, 7), (3, 4, 6), (2, 3, 4))
