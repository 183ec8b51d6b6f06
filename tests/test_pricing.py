"""Pricing any network: members by the full model, others by operator table + operator model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from space.arch import scale_width
from space.reference import REFERENCE, get_reference, parse_variant, resolve_arch, variant
from space.spaces import get_space
from surrogate.predict.oplevel import config_from_key
from surrogate.predict.optable import OpTable

pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def mnasnet():
    from surrogate.predict import shipped_predictor

    return shipped_predictor("cpu-litert", "mnasnet")


def test_variant_names_round_trip_and_match_the_registry():
    a = resolve_arch("mnasnet-a1@w0.75,r192")
    assert a.name == "mnasnet-a1@w0.75,r192" and a.resolution == 192
    assert resolve_arch(a.name) == a and resolve_arch("mnasnet-a1@r192,w0.75") == a
    assert a.replace(name=None) == scale_width(get_reference("mnasnet-a1"), 0.75).replace(resolution=192)
    # the registry's own width variants are what the variant syntax builds
    assert variant("mnasnet-b1", 0.75).replace(name=None) == REFERENCE["mnasnet-b1-0.75"].replace(name=None)
    assert (variant("mobilenetv2-1.0", 1.4, 160).replace(name=None)
            == REFERENCE["mobilenetv2-1.4-160"].replace(name=None))
    assert parse_variant("mnasnet-b1@w0.5") == ("mnasnet-b1", 0.5, None)


@pytest.mark.parametrize("text, fragment", [
    ("mnasnet-a1@", "expected NAME@w"), ("mnasnet-a1@w", "bad or repeated part 'w'"),
    ("mnasnet-a1@w0.5,w1", "bad or repeated part 'w1'"), ("mnasnet-a1@r19.2", "'r19.2'"),
    ("mnasnet-a1@q3", "'q3'"), ("mnasnet-a1@winf", "'winf'"), ("mnasnet-a1@w9", "0.1..4.0"),
    ("nope@w1", "unknown architecture name 'nope'"), ("mnasnet-a1@r4", "resolution"),
])
def test_bad_variant_names_are_refused(text, fragment):
    with pytest.raises(ValueError) as e:
        resolve_arch(text)
    assert fragment in str(e.value)


def test_config_from_key_inverts_every_shipped_key():
    from surrogate.predict.workflow import default_predictor_dir, shipped_predictors

    import json

    checked = 0
    for profile, space in shipped_predictors():
        ops = default_predictor_dir(profile, space) / "ops.json"
        if not ops.is_file():  # a published device's predictor: no operator table
            assert json.loads(ops.with_name("meta.json").read_text()).get("table") is None
            continue
        keys = json.loads(ops.read_text())
        assert all(config_from_key(k).key() == k for k in keys)
        checked += 1
    assert checked >= 4  # the cpu-litert spaces at least
    with pytest.raises(ValueError, match="operator key 'mbconv_bogus'"):
        config_from_key("mbconv_bogus")


def test_optable_sum_any_network_with_breakdown():
    a1 = get_reference("mnasnet-a1")
    ops = [lc for lc in a1.ops() if not lc.is_identity]
    half = {lc.key(): 0.5 for lc in ops[::2]}
    t = OpTable(half)
    s = t.sum(a1, breakdown=True)
    n_in = sum(lc.key() in half for lc in ops)  # repeated layers share a key
    assert 0 < n_in < len(ops)
    assert math.isnan(s.ms) and s.measured == n_in and s.missing == len(ops) - n_in
    assert [c.source for c in s.ops].count("missing") == s.missing and len(s.ops) == len(ops)
    t2 = t.with_fallback(lambda lc: 2.0)
    s2 = t2.sum(a1)
    assert s2.ms == pytest.approx(0.5 * s.measured + 2.0 * s.missing) and s2.modelled == s.missing
    assert s2.ops == ()  # breakdown only on request
    with pytest.raises(TypeError, match="arch: expected a space.Arch"):
        t.sum("mnasnet-a1")


def test_member_is_priced_by_the_full_model(mnasnet):
    sp = get_space("mnasnet")
    idx = sp.sample_indices(np.random.default_rng(3), 4)
    archs = [sp.to_arch(i) for i in idx]
    prices = mnasnet.price_many(archs)
    assert [p.ms for p in prices] == pytest.approx(list(mnasnet.predict(idx)))
    for a, p in zip(archs, prices):
        n = len([lc for lc in a.ops() if not lc.is_identity])
        assert p.method == "model" and p.measured_ops == n and p.modelled_ops == 0
        assert p.table_ms == pytest.approx(float(mnasnet.features_.table_sum([a])[0]))


def test_reference_variant_outside_the_space_is_priced_from_operators(mnasnet):
    p = mnasnet.price("mnasnet-a1@w0.75,r192", breakdown=True)
    full = mnasnet.price("mnasnet-a1")
    n = len([lc for lc in resolve_arch("mnasnet-a1@w0.75,r192").ops() if not lc.is_identity])
    assert p.method == "table" and "resolution is 192" in p.note
    assert p.measured_ops + p.modelled_ops == n == len(p.ops) and p.modelled_ops > 0
    assert sum(c.ms for c in p.ops) == pytest.approx(p.table_ms)
    assert 0 < p.ms < full.ms  # narrower and smaller input: cheaper than A1 itself
    # the learned model's scale sits in a sane band around the plain table sum
    assert 0.8 < p.ms / p.table_ms < 1.5


def test_table_path_agrees_with_the_model_on_members(mnasnet):
    """A member priced as if it were outside the space lands near its full-model price."""
    from surrogate.predict.pricing import _price_outside

    sp = get_space("mnasnet")
    for i in sp.sample_indices(np.random.default_rng(5), 5):
        a = sp.to_arch(i)
        t = _price_outside(mnasnet, a, mnasnet.features_.table_, "test", False)
        assert t.modelled_ops == 0 and abs(t.ms / mnasnet.price(a).ms - 1) < 0.15


def test_flops_linear_prices_any_network_by_madds():
    from space.counting import count_madds
    from surrogate.predict import FlopsLinear

    sp = get_space("anb")
    idx = sp.sample_indices(np.random.default_rng(0), 30)
    y = np.array([count_madds(sp.to_arch(i)) for i in idx]) * 2e-8 + 1.0
    est = FlopsLinear("anb").fit(idx, y)
    p = est.price("mobilenetv2-1.0")
    assert p.method == "madds" and p.measured_ops == 0
    assert p.ms == pytest.approx(count_madds(REFERENCE["mobilenetv2-1.0"]) * 2e-8 + 1.0, rel=1e-6)


def test_shipped_predictor_unknown_pair_lists_what_ships():
    from surrogate.predict import shipped_predictor

    with pytest.raises(ValueError) as e:
        shipped_predictor("cpu-litert", "no-such-space")
    msg = str(e.value)
    assert "\n" not in msg and "cpu-litert/mnasnet" in msg and "mnas fit --profile cpu-litert" in msg
    with pytest.raises(ValueError) as e:
        shipped_predictor("cpu-nope", "mnasnet")
    assert "cpu-litert/anb" in str(e.value) and "mnas fit" not in str(e.value)
