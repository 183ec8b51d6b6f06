"""Latency predictors: estimator contract, table sums, gradients, persistence, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from space import get_space
from surrogate.predict.compiled import CompiledSpace
from surrogate.predict.differentiable import ExpectedTableLatency, RelaxedMLP
from surrogate.predict.estimators import FlopsLinear, LatencyModel, ResidualLatency, TableSum
from surrogate.predict.features import ArchFeatures
from surrogate.predict.metrics import latency_metrics, plot_predicted_vs_measured
from surrogate.predict.oplevel import OpLevelModel, _act_features, op_features, row_to_config
from surrogate.predict.optable import OpTable
from surrogate.predict.persist import load_predictor, save_predictor
from surrogate.predict.transfer import FewShotTransfer
from surrogate.tables import op_row_key

SPACE = "nasbench-macro"


def cost_ms(lc) -> float:
    """A deterministic cost model standing in for a device in contract tests."""
    from surrogate.predict.oplevel import op_cost

    m, p = op_cost(lc)
    return 0.02 + m / 2e8 + lc.h * lc.w * lc.in_ch / 5e6


@pytest.fixture(scope="module")
def table():
    sp = get_space(SPACE)
    return OpTable({lc.key(): cost_ms(lc) for lc in sp.operator_configs()}, profile="test",
                   space=SPACE, sha256="0" * 64)


@pytest.fixture(scope="module")
def data(table):
    sp = get_space(SPACE)
    idx = np.array(list(sp.enumerate()))
    rng = np.random.default_rng(0)
    s = TableSum(SPACE, table).fit().predict(idx)
    # whole network = 1.15 x table sum, with a per-arch interaction and noise
    y = 1.15 * s * (1 + 0.05 * idx[:, 2] / 2) * np.exp(0.01 * rng.standard_normal(len(idx)))
    return idx, y


def test_table_sum_equals_sum_over_ops(table):
    sp = get_space(SPACE)
    rng = np.random.default_rng(3)
    ts = TableSum(SPACE, table).fit()
    for a in (sp.sample(rng) for _ in range(20)):
        want = sum(table(lc) for lc in a.ops())
        assert math.isclose(ts.predict([a])[0], want, rel_tol=1e-12)


def test_calibrated_predictors_stay_positive_when_extrapolating(table):
    """A line through two large networks' timings crosses zero before the smallest ones."""
    from surrogate.predict.relaxed import relaxed_latency

    sp = get_space(SPACE)
    idx = np.array(list(sp.enumerate()))
    s = TableSum(SPACE, table).fit().predict(idx)
    big = idx[np.argsort(s)[-2:]]
    sb = np.sort(s)[-2:]
    y = np.array([sb[0] * 1.0, sb[1] * 3.0])  # steep slope: a large negative intercept
    for est in (TableSum(SPACE, table, calibrate=True), FlopsLinear(SPACE)):
        est.fit(big, y)
        assert est.intercept_ < 0
        pred = est.predict(idx)
        assert np.all(pred > 0)
        small = np.argmin(s)
        x_small = s[small] if isinstance(est, TableSum) else est.features_.compiled_.terms(
            idx[[small]])["total_madds"][0]
        assert pred[small] == pytest.approx(est.floor_ratio_ * x_small)
        mod, _ = relaxed_latency(est)  # the relaxed form has the same floor on one-hots
        onehot = torch.as_tensor(sp.onehot(idx[[small, int(np.argmax(s))]]), dtype=torch.float32)
        assert np.allclose(mod(onehot).detach().numpy(), est.predict(idx[[small, int(np.argmax(s))]]),
                           rtol=1e-4)


def test_inputs_archs_strings_and_indices_agree(table, data):
    idx, y = data
    sp = get_space(SPACE)
    est = LatencyModel(SPACE, table, model="ridge").fit(idx[:400], y[:400])
    archs = [sp.to_arch(i) for i in idx[400:410]]
    p1 = est.predict(idx[400:410])
    np.testing.assert_allclose(est.predict(archs), p1)
    np.testing.assert_allclose(est.predict([str(a) for a in archs]), p1)


@pytest.mark.parametrize("make", [
    lambda t: FlopsLinear(SPACE),
    lambda t: TableSum(SPACE, t, calibrate=True),
    lambda t: LatencyModel(SPACE, t, model="xgb", model_params={"n_estimators": 60}),
    lambda t: LatencyModel(SPACE, t, model="ridge"),
    lambda t: LatencyModel(SPACE, t, model="mlp", model_params={"epochs": 30}),
    lambda t: LatencyModel(SPACE, None, model="rf", model_params={"n_estimators": 30}),
    lambda t: ResidualLatency(SPACE, t, model="ridge"),
])
def test_estimator_contract(make, table, data):
    idx, y = data
    est = make(table)
    params = est.get_params()
    assert clone(est).get_params().keys() == params.keys()
    assert est.fit(idx[:600], y[:600]) is est
    assert all(k.endswith("_") for k in vars(est) if k not in params)
    p = est.predict(idx[600:800])
    assert p.shape == (200,) and np.all(p > 0)
    # composes with model selection
    scores = cross_val_score(clone(est), idx[:300], y[:300], cv=3,
                             scoring="neg_mean_absolute_percentage_error")
    assert np.all(np.isfinite(scores))


def test_learned_beats_flops_on_structured_latency(table, data):
    idx, y = data
    tr, te = slice(0, 3000), slice(3000, None)
    flops = latency_metrics(y[te], FlopsLinear(SPACE).fit(idx[tr], y[tr]).predict(idx[te]))
    resid = latency_metrics(y[te], ResidualLatency(SPACE, table, model="ridge").fit(idx[tr], y[tr]).predict(idx[te]))
    assert resid["mape"] < flops["mape"]
    assert resid["within_10pct"] > 0.95


def test_check_estimator_on_mlp():
    from sklearn.utils.estimator_checks import check_estimator

    from surrogate.predict.mlp import TorchMLPRegressor

    check_estimator(TorchMLPRegressor(hidden=(32,), epochs=60, batch_size=32))


def test_pipeline_with_featuriser(table, data):
    from sklearn.linear_model import Ridge

    idx, y = data
    pipe = make_pipeline(ArchFeatures(SPACE, table), Ridge(alpha=1.0))
    pipe.fit(idx[:500], np.log(y[:500]))
    assert pipe.predict(idx[500:510]).shape == (10,)


def test_missing_ops_are_reported(data):
    idx, y = data
    partial = OpTable({}, profile="x", space=SPACE)
    ts = TableSum(SPACE, partial).fit()
    with pytest.raises(ValueError, match="lacks"):
        ts.predict(idx[:3])
    with pytest.raises(ValueError, match="needs an operator table"):
        TableSum(SPACE).fit()
    with pytest.raises(ValueError, match="latencies"):
        FlopsLinear(SPACE).fit(idx[:3], [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="3 architectures but 2"):
        FlopsLinear(SPACE).fit(idx[:3], [1.0, 2.0])


def test_op_level_model_fills_unmeasured_ops():
    sp = get_space("anb")
    ops = sp.operator_configs()
    rng = np.random.default_rng(0)
    test = rng.random(len(ops)) < 0.25
    y = np.array([cost_ms(lc) for lc in ops])
    m = OpLevelModel(model="xgb", model_params={"n_estimators": 300}).fit(
        [o for o, t in zip(ops, test) if not t], y[~test])
    pred = m.predict([o for o, t in zip(ops, test) if t])
    assert latency_metrics(y[test], pred)["mape"] < 0.15
    assert len(m.missing(ops)) == test.sum()
    # as a fallback, every architecture gets a prediction
    tab = OpTable({o.key(): v for o, v, t in zip(ops, y, test) if not t}, fallback=m.predict_op)
    assert np.all(np.isfinite(TableSum("anb", tab).fit().predict(sp.sample_indices(rng, 50))))
    rows = [{**op_row_key(o), "op_key": o.key()} for o in ops[:5]]
    assert [row_to_config(r) for r in rows] == ops[:5]
    assert op_features(ops[:3]).shape[0] == 3


def test_op_features_price_relu6_as_the_fused_clamp_relu_is():
    """No table measures ReLU6; as a fused clamp it must look like ReLU, not like SiLU."""
    import dataclasses

    lc = get_space("mnasnet").operator_configs()[5]
    f = {a: op_features([dataclasses.replace(lc, act=a)])[0] for a in ("relu", "relu6", "silu", "hswish")}
    assert np.array_equal(f["relu"], f["relu6"])
    assert not np.array_equal(f["relu"], f["silu"]) and not np.array_equal(f["silu"], f["hswish"])
    with pytest.raises(ValueError, match="activation 'gelu'"):
        _act_features("gelu")


@pytest.mark.parametrize("space", ["nasbench-macro", "anb", "mnasnet"])
def test_expected_latency_matches_table_sum_and_gradients(space):
    sp = get_space(space)
    cs = CompiledSpace.build(sp, lambda lc: 0.0 if lc.is_identity else cost_ms(lc))
    mod = ExpectedTableLatency(cs, dtype=torch.float64)
    idx = sp.sample_indices(np.random.default_rng(1), 8)
    onehot = torch.as_tensor(sp.onehot(idx), dtype=torch.float64)
    np.testing.assert_allclose(mod(onehot).numpy(), cs.table_sum(idx), rtol=1e-10)
    logits = torch.randn(2, sp.onehot_width, dtype=torch.float64, requires_grad=True)

    def f(lg):
        probs = torch.cat([torch.softmax(c, dim=1) for c in torch.split(lg, [d.n for d in sp.decisions], 1)], 1)
        return mod(probs)

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-5)


def test_expected_latency_is_the_expectation():
    sp = get_space(SPACE)
    cs = CompiledSpace.build(sp, lambda lc: 0.0 if lc.is_identity else cost_ms(lc))
    mod = ExpectedTableLatency(cs, dtype=torch.float64)
    rng = np.random.default_rng(5)
    probs = [rng.dirichlet(np.ones(d.n)) for d in sp.decisions]
    # exact expectation by enumerating all 6,561 index vectors
    from itertools import product

    allidx = np.array(list(product(*[range(d.n) for d in sp.decisions])))
    w = np.prod([probs[j][allidx[:, j]] for j in range(sp.n_decisions)], axis=0)
    exact = float((w * cs.table_sum(allidx)).sum())
    got = mod(torch.as_tensor(np.concatenate(probs), dtype=torch.float64)).item()
    assert math.isclose(got, exact, rel_tol=1e-10)


def test_relaxed_mlp_gradients(data):
    idx, y = data
    sp = get_space(SPACE)
    lm = LatencyModel(SPACE, None, model="mlp", parts=("encoding",),
                      model_params={"epochs": 20}).fit(idx[:500], y[:500])
    rm = RelaxedMLP(lm)
    onehot = torch.as_tensor(sp.onehot(idx[:5]), dtype=torch.float32)
    np.testing.assert_allclose(rm(onehot).detach().numpy(), lm.predict(idx[:5]), rtol=1e-4)
    x = torch.full((1, sp.onehot_width), 1 / 3, dtype=torch.float32, requires_grad=True)
    rm(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # finite differences, in float64
    rm = rm.double()
    x64 = torch.rand(2, sp.onehot_width, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rm, (x64,), eps=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="encoding"):
        RelaxedMLP(LatencyModel(SPACE, None, model="ridge").fit(idx[:50], y[:50]))


@pytest.mark.parametrize("make", [
    lambda t: FlopsLinear(SPACE),
    lambda t: TableSum(SPACE, t, calibrate=True),
    lambda t: LatencyModel(SPACE, t, model="xgb", model_params={"n_estimators": 40}),
    lambda t: LatencyModel(SPACE, t, model="mlp", model_params={"epochs": 10}),
    lambda t: ResidualLatency(SPACE, t, model="ridge"),
    lambda t: ResidualLatency(SPACE, t, model="huber"),
    lambda t: LatencyModel(SPACE, t, model="xgb-l1", model_params={"n_estimators": 40}),
])
def test_save_load_round_trip_and_mismatch(make, table, data, tmp_path):
    idx, y = data
    est = make(table).fit(idx[:500], y[:500])
    p = est.predict(idx[500:600])
    save_predictor(est, tmp_path / "pred", profile="cpu-litert")
    again = load_predictor(tmp_path / "pred", space=SPACE, profile="cpu-litert")
    np.testing.assert_allclose(again.predict(idx[500:600]), p, rtol=1e-5)
    with pytest.raises(ValueError, match="fitted for space 'nasbench-macro', not 'anb'"):
        load_predictor(tmp_path / "pred", space="anb")
    with pytest.raises(ValueError, match="profile 'cpu-litert', not 'cpu-onnxruntime'"):
        load_predictor(tmp_path / "pred", profile="cpu-onnxruntime")
    with pytest.raises(FileNotFoundError, match="no saved predictor"):
        load_predictor(tmp_path / "nothing")


def test_unsavable_model_is_refused(table, data, tmp_path):
    idx, y = data
    est = LatencyModel(SPACE, table, model="rf", model_params={"n_estimators": 5}).fit(idx[:50], y[:50])
    with pytest.raises(ValueError, match="no stable file format"):
        save_predictor(est, tmp_path / "rf")
    assert not (tmp_path / "rf").exists()


def test_few_shot_transfer_improves_with_k(table, data):
    idx, y_src = data
    rng = np.random.default_rng(0)
    # a target device: different scale and a per-decision effect the source lacks
    y_tgt = 0.6 * y_src ** 0.95 * (1 + 0.1 * (idx[:, 5] == 2)) * np.exp(0.01 * rng.standard_normal(len(idx)))
    source = lambda X: TableSum(SPACE, table).fit().predict(X) * 1.15  # noqa: E731
    test = np.arange(2000, len(idx))
    errs = {}
    for k in (5, 100):
        tr = rng.choice(2000, size=k, replace=False)
        m = FewShotTransfer(SPACE, source=source).fit(idx[tr], y_tgt[tr])
        errs[k] = latency_metrics(y_tgt[test], m.predict(idx[test]))["mape"]
    assert errs[100] < errs[5] < 0.2


def test_metrics_and_plot(tmp_path):
    y = np.array([1.0, 2.0, 3.0, 4.0])
    m = latency_metrics(y, y * np.array([1.0, 1.04, 0.93, 1.2]))
    assert m["within_5pct"] == 0.5 and m["within_10pct"] == 0.75 and m["kendall_tau"] == 1.0
    assert math.isclose(m["mape"], (0 + 0.04 + 0.07 + 0.2) / 4)
    png = plot_predicted_vs_measured(y, {"a": y * 1.02}, tmp_path / "p.png", title="t")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
