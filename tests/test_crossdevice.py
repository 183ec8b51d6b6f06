"""surrogate.predict.crossdevice: phone latency from host operator times and K timings.

All data is synthetic: a host operator table priced from MAdds, and "devices" whose
latencies are known per-class factors of the host features, so every fit has a truth.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("sklearn")

from space import parse_arch  # noqa: E402
from space.reference import REFERENCE, resolve_arch  # noqa: E402
from surrogate.predict.crossdevice import (AUTO_LOO_MIN, EXTRA, SCHEMES,  # noqa: E402
                                           CrossDeviceLatency, CrossDevicePrior, host_features)
from surrogate.predict.oplevel import op_cost  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402

VARIANTS = [f"{b}@w{w},r{r}" for b in ("mnasnet-a1", "fbnet-c", "proxylessnas-mobile",
                                         "mobilenetv3-large-1.0") for w in (0.75, 1.25) for r in (160, 192)]
# per-device factors over the "kernel" columns (stem, head, dense, dw3, dw5, dw7, mem, ops, one):
# phones of one shape, far from the host's (dense and 7x7 depthwise dear), each a little off it
BASE = np.array([2.0, 1.5, 3.0, 1.0, 1.8, 4.0, 0.0, 0.0, 0.0])
JITTER = np.exp(0.15 * np.random.default_rng(7).standard_normal((8, len(BASE))))
DEVICES = BASE * JITTER + np.array([0.0] * 6 + [0.02, 0.005, 0.2])


def host_ms(lc) -> float:
    return op_cost(lc)[0] / 1e7 + 0.005


def table_for(archs) -> OpTable:
    ent = {lc.key(): host_ms(lc) for a in archs for lc in a.ops() if not lc.is_identity}
    return OpTable(ent, profile="cpu-litert", space="reference", source="synthetic.csv")


@pytest.fixture(scope="module")
def world():
    """(archs, host table, kernel features, latencies [n, devices], prior on the devices)."""
    archs = [resolve_arch(n) for n in sorted(REFERENCE)] + [resolve_arch(v) for v in VARIANTS]
    tab = table_for(archs)
    F = host_features(archs, tab, "kernel")
    Y = F @ DEVICES.T
    prior = CrossDevicePrior(lam="auto").fit([(F, Y[:, i]) for i in range(len(DEVICES))])
    return archs, tab, F, Y, prior


def test_host_features_columns_and_sums():
    names = ["mnasnet-a1", "mobilenetv2-1.0", "mobilenetv3-large-1.0", "mnasnet-a1@w0.75,r192"]
    skip = parse_arch("r1_k3_s11_e1_i32_o16_noskip,r2_k3_s22_e6_i16_o24,"
                      "r2_k3_s11_e1_i24_o24_skip,r1_k3_s11_e6_i24_o320")
    archs = [resolve_arch(n) for n in names] + [skip]
    tab = table_for(archs)
    for scheme, classes in SCHEMES.items():
        F = host_features(archs, tab, scheme)
        nc = len(classes)
        assert F.shape == (len(archs), nc + len(EXTRA))
        for i, a in enumerate(archs):
            ops = [lc for lc in a.ops() if not lc.is_identity]
            assert F[i, :nc].sum() == pytest.approx(sum(host_ms(lc) for lc in ops), rel=1e-12)
            assert F[i, nc + 1] == len(ops) and F[i, nc + 2] == 1.0 and F[i, nc] > 0
    assert F[-1, -2] == len(list(skip.ops())) - 2  # the two identity layers are not operators
    k = dict(zip(SCHEMES["kernel"], host_features(archs[1:2], tab, "kernel")[0]))
    assert k["dw3"] > 0 and k["dw5"] == k["dw7"] == k["dense"] == 0  # MobileNetV2: 3x3 only
    se = dict(zip(SCHEMES["kernel-se"], host_features(archs[:1], tab, "kernel-se")[0]))
    assert se["se"] > 0
    act = dict(zip(SCHEMES["kernel-act"], host_features(archs[2:3], tab, "kernel-act")[0]))
    assert act["hswish"] > 0


def test_missing_operator_names_the_network():
    a = resolve_arch("mnasnet-a1")
    tab = table_for([a])
    del tab.entries[list(a.ops())[3].key()]
    with pytest.raises(ValueError, match=r"^mnasnet-a1: \d+ operator"):  # not the complete one
        host_features([resolve_arch("mobilenetv2-1.0"), a], table_for([resolve_arch("mobilenetv2-1.0")]))
    with pytest.raises(ValueError, match=r"mnasnet-a1: 1 operator"):
        host_features([a], tab)
    assert np.isfinite(host_features([a], tab.with_fallback(lambda lc: 1.0))).all()


def test_factors_recover_known_factors(world):
    archs, tab, F, Y, _ = world
    truth = np.array([2.0, 1.5, 3.0, 1.0, 1.8, 4.0, 0.0, 0.0, 0.0])
    y = F @ truth
    est = CrossDeviceLatency(table=tab, mode="factors", lam=0.01).fit(archs, y)
    assert est.mode_ == "factors" and (est.coef_ >= 0).all()
    # head, dense and the depthwise classes carry most of the time: tight; the stem is a
    # near-constant sliver the memory term can share: loose
    np.testing.assert_allclose(est.coef_[1:6], truth[1:6], rtol=0.05)
    assert est.coef_[0] == pytest.approx(2.0, rel=0.2)
    assert np.max(np.abs(est.predict(archs) / y - 1)) < 0.02
    auto = CrossDeviceLatency(table=tab, mode="auto").fit(F, y, features=True)  # no prior: factors
    assert auto.mode_ == "factors" and np.isfinite(auto.loo_error_)


def test_consensus_predicts_a_mixed_device_from_few_timings(world):
    _, _, F, Y, prior = world
    assert prior.sources_.shape == (len(DEVICES), F.shape[1]) and prior.n_groups_ == len(DEVICES)
    y = 1.6 * Y.mean(axis=1)  # a new phone: a scaled mix of the known ones
    rng = np.random.default_rng(0)
    for k in (3, 4, 5):
        ours, ratio = [], []
        for _ in range(15):
            pick = rng.choice(len(y), k, replace=False)
            rest = np.setdiff1d(np.arange(len(y)), pick)
            est = CrossDeviceLatency(prior=prior).fit(F[pick], y[pick], features=True)
            assert est.mode_ == "consensus"
            ours.append(np.mean(np.abs(est.predict(F[rest], features=True) / y[rest] - 1)))
            s = np.median(y[pick] / F[pick, :6].sum(1))  # one ratio on host ms
            ratio.append(np.mean(np.abs(s * F[rest, :6].sum(1) / y[rest] - 1)))
        ours = np.array(ours)
        assert np.median(ours) < 0.04 and np.mean(ours < 0.06) >= 0.8, (k, ours)
        assert np.median(ours) < 0.25 * np.median(ratio), (k, np.median(ours), np.median(ratio))


def test_consensus_slope_never_turns_negative(world):
    _, _, F, _, prior = world
    z = np.exp(np.log(F @ prior.sources_.T).mean(axis=1))
    pick = np.argsort(z)[:: len(z) // 5][:5]
    y = 100.0 / z[pick]  # slower where the consensus says faster
    est = CrossDeviceLatency(prior=prior, mode="consensus").fit(F[pick], y, features=True)
    used = np.exp(np.log(F @ est.sources_.T).mean(axis=1))  # the devices the fit kept
    assert np.polyfit(np.log(used[pick]), np.log(y), 1)[0] < 0  # a free slope would be negative
    assert est.a_ == 1.0 and est.b_ == pytest.approx(np.mean(np.log(y) - np.log(used[pick])))
    p = est.predict(F, features=True)
    np.testing.assert_allclose(p, used * np.exp(est.b_), rtol=1e-9)  # increasing in z, positive
    one = CrossDevicePrior(lam=1.0).fit([(F, F @ DEVICES[0])])  # one device: z is its prediction
    z1 = F @ one.sources_[0]
    good = CrossDeviceLatency(prior=one, mode="consensus").fit(F[pick], 3 * z1[pick] ** 0.8, features=True)
    assert good.a_ == pytest.approx(0.8) and good.b_ == pytest.approx(np.log(3))
    flip = CrossDeviceLatency(prior=one, mode="consensus").fit(F[pick], 3 * z1[pick] ** -0.8, features=True)
    assert flip.a_ == 1.0 and (flip.predict(F, features=True) > 0).all()
    two = CrossDeviceLatency(prior=one, mode="consensus").fit(F[pick[:2]], [5.0, 9.0], features=True)
    assert two.a_ == 1.0  # below SLOPE_MIN timings: one ratio


def test_auto_mode_switches_on_loo_min(world):
    _, _, F, Y, prior = world
    y = 1.3 * Y[:, 1]
    few = CrossDeviceLatency(prior=prior).fit(F[: AUTO_LOO_MIN - 1], y[: AUTO_LOO_MIN - 1], features=True)
    assert few.mode_ == "consensus" and np.isnan(few.loo_error_) and few.n_fit_ == AUTO_LOO_MIN - 1
    many = CrossDeviceLatency(prior=prior).fit(F[:40], y[:40], features=True)
    assert many.mode_ in ("consensus", "factors") and np.isfinite(many.loo_error_)


@pytest.mark.parametrize("mode", ["consensus", "factors"])
def test_state_round_trip_and_damage(world, mode):
    archs, tab, F, Y, prior = world
    est = CrossDeviceLatency(table=tab, prior=prior, mode=mode).fit(archs[:6], Y[:6, 2])
    state = json.loads(json.dumps(est.state()))
    back = CrossDeviceLatency.from_state(state, table=tab)
    np.testing.assert_array_equal(back.predict(archs), est.predict(archs))
    assert back.mode_ == mode and back.factors() == est.factors()
    bad = [({**state, "format": "other/1"}, "format"), ({**state, "coef": state["coef"][:-1]}, "coefficients"),
           ({**state, "mode": "auto"}, "mode"), ({**state, "sources": [[1.0, 2.0]]}, "damaged"),
           ({k: v for k, v in state.items() if k != "a"}, "damaged"), ([1, 2], "format")]
    for s, needle in bad:
        with pytest.raises(ValueError, match=needle):
            CrossDeviceLatency.from_state(s, table=tab)


def test_prior_dict_round_trip(world):
    _, _, F, Y, prior = world
    d = json.loads(json.dumps(prior.to_dict()))
    back = CrossDevicePrior.from_dict(d)
    np.testing.assert_array_equal(back.theta_, prior.theta_)
    np.testing.assert_array_equal(back.sources_, prior.sources_)
    assert (back.lam_, back.n_groups_, back.scheme) == (prior.lam_, prior.n_groups_, "kernel")
    a = CrossDeviceLatency(prior=prior).fit(F[:5], Y[:5, 0], features=True).predict(F, features=True)
    b = CrossDeviceLatency(prior=d).fit(F[:5], Y[:5, 0], features=True).predict(F, features=True)
    np.testing.assert_array_equal(a, b)
    for bad in ({**d, "scheme": "nope"}, {**d, "theta": d["theta"][:-1]}, [1]):
        with pytest.raises(ValueError, match="not a cross-device prior"):
            CrossDevicePrior.from_dict(bad)


def test_prior_dict_missing_lam_is_value_error(world):
    d = world[4].to_dict()
    del d["lam"]
    with pytest.raises(ValueError):
        CrossDevicePrior.from_dict(d)


@pytest.mark.parametrize("mode", ["consensus", "factors"])
def test_forward_matches_predict_and_has_gradient(world, mode):
    torch = pytest.importorskip("torch")
    _, _, F, Y, prior = world
    est = CrossDeviceLatency(prior=prior, mode=mode).fit(F[:10], Y[:10, 3], features=True)
    X = torch.tensor(F[10:30], dtype=torch.float64, requires_grad=True)
    out = est.forward(X)
    np.testing.assert_allclose(out.detach().numpy(), est.predict(F[10:30], features=True), rtol=1e-10)
    out.sum().backward()
    g = X.grad.numpy()
    assert np.isfinite(g).all() and np.abs(g).sum() > 0


def test_device_op_table_reproduces_predict(world):
    archs, tab, F, Y, _ = world
    est = CrossDeviceLatency(table=tab, mode="factors", lam=0.1).fit(archs, 2.0 * Y[:, 0])
    dev, fixed = est.device_op_table()
    assert len(dev) == len(tab) and fixed == est.coef_[-1]
    got = np.array([dev.sum(a).ms + fixed for a in archs])
    np.testing.assert_allclose(got, est.predict(archs), rtol=1e-9)
    with pytest.raises(ValueError, match="consensus"):
        CrossDeviceLatency(prior=world[4], mode="consensus").fit(F[:4], Y[:4, 0], features=True).device_op_table()


def test_invalid_inputs_name_what_is_wrong(world):
    archs, tab, F, Y, prior = world
    f = F[:4]
    cases = [
        (lambda: CrossDeviceLatency().fit(f, [1.0, 0.0, 2.0, 3.0], features=True), "latencies"),
        (lambda: CrossDeviceLatency().fit(f, [1.0, -1.0, 2.0, 3.0], features=True), "latencies"),
        (lambda: CrossDeviceLatency().fit(f, [1.0, np.nan, 2.0, 3.0], features=True), "latencies"),
        (lambda: CrossDeviceLatency(mode="best").fit(f, Y[:4, 0], features=True), "mode"),
        (lambda: CrossDeviceLatency(mode="factors", lam=0).fit(f, Y[:4, 0], features=True), "lam"),
        (lambda: CrossDeviceLatency(mode="factors", lam=-1.0).fit(f, Y[:4, 0], features=True), "lam"),
        (lambda: CrossDeviceLatency(mode="consensus").fit(f, Y[:4, 0], features=True), "consensus"),
        (lambda: CrossDeviceLatency().fit(f, Y[:3, 0], features=True), "4 networks but 3 latencies"),
        (lambda: CrossDeviceLatency().fit(archs[:4], Y[:4, 0]), "table"),
        (lambda: CrossDeviceLatency().predict(f, features=True), "not fitted"),
        (lambda: host_features(archs[:2], tab, "nope"), "scheme"),
        (lambda: CrossDevicePrior(scheme="nope").fit([(f, Y[:4, 0])]), "scheme"),
        (lambda: CrossDevicePrior().fit([]), "at least one"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError, match=needle):
            call()


def test_unknown_scheme_without_prior_is_value_error(world):
    with pytest.raises(ValueError, match="scheme"):
        CrossDeviceLatency(scheme="nope").fit(world[2][:4], world[3][:4, 0], features=True)
