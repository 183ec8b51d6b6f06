"""One feature layout for numpy and torch, differentiable predictors, restored estimators."""
from __future__ import annotations

import json
import shutil
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import HuberRegressor, RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from space import get_space
from surrogate.predict.differentiable import RelaxedFeatures
from surrogate.predict.estimators import LatencyModel, ResidualLatency
from surrogate.predict.features import ArchFeatures
from surrogate.predict.layout import FeatureLayout
from surrogate.predict.optable import OpTable
from surrogate.predict.persist import load_predictor, save_predictor
from surrogate.predict.relaxed import relaxed_latency
from surrogate.predict.workflow import PREDICTORS_DIR

ALL_PARTS = [("encoding", "counts", "table"), ("encoding",), ("counts",), ("table",),
             ("counts", "table"), ("encoding", "table")]


def _table(space: str) -> OpTable:
    def ms(lc) -> float:
        from surrogate.predict.oplevel import op_cost

        m, _ = op_cost(lc)
        return 0.0 if lc.is_identity else 0.02 + m / 2e8 + lc.h * lc.w * lc.in_ch / 5e6

    sp = get_space(space)
    return OpTable({lc.key(): ms(lc) for lc in sp.operator_configs()}, profile="test", space=space,
                   sha256="0" * 64)


@pytest.fixture(scope="module")
def tables():
    return {s: _table(s) for s in ("nasbench-macro", "anb", "mnasnet", "fbnet")}


def _soft(sp, rng, n):
    return np.concatenate([rng.dirichlet(np.ones(d.n), size=n) for d in sp.decisions], axis=1)


@pytest.mark.parametrize("space", ["nasbench-macro", "anb", "mnasnet", "fbnet"])
@pytest.mark.parametrize("parts", ALL_PARTS)
def test_numpy_and_torch_features_agree_on_random_archs_and_onehots(space, parts, tables):
    sp = get_space(space)
    f = ArchFeatures(space, tables[space], parts).fit()
    assert isinstance(f.layout_, FeatureLayout)
    assert list(f.get_feature_names_out()) == list(f.layout_.names)
    idx = sp.sample_indices(np.random.default_rng(0), 40)
    X = f.transform(idx)
    assert X.shape == (40, f.layout_.n_features) and np.isfinite(X).all()
    rel = RelaxedFeatures(f)
    with torch.no_grad():
        got, table_sum = rel(torch.as_tensor(sp.onehot(idx)))
    np.testing.assert_allclose(got.numpy(), X, rtol=1e-12, atol=1e-12)
    if "table" in parts:
        np.testing.assert_allclose(table_sum.numpy(), f.table_sum(idx), rtol=1e-12)
    else:
        assert table_sum is None
    # one-hot rows through the torch features give the one-hot columns back unchanged
    if "encoding" in parts:
        assert np.array_equal(got.numpy()[:, : sp.onehot_width], sp.onehot(idx))


@pytest.mark.parametrize("parts", ALL_PARTS)
def test_relaxed_features_are_expectations(parts, tables):
    """On soft inputs, linear features are the exact expectation over all networks of
    nasbench-macro (enumerated) and log features the log of the expected inner term."""
    sp = get_space("nasbench-macro")
    f = ArchFeatures("nasbench-macro", tables["nasbench-macro"], parts).fit()
    probs = _soft(sp, np.random.default_rng(3), 2)
    with torch.no_grad():
        got = RelaxedFeatures(f)(torch.as_tensor(probs))[0].numpy()
    allidx = np.array(list(product(*[range(d.n) for d in sp.decisions])))
    X = f.transform(allidx)
    is_log = np.array([n.startswith("log_") for n in f.feature_names_out_])
    X[:, is_log] = np.exp(X[:, is_log])
    offs = np.concatenate([[0], np.cumsum(sp.cardinalities)[:-1]])
    for row, p in zip(got, probs):
        w = np.prod(p[allidx + offs], axis=1)
        want = w @ X
        want[is_log] = np.log(want[is_log])
        np.testing.assert_allclose(row, want, rtol=1e-10, atol=1e-12)
    rel = RelaxedFeatures(f)
    x = torch.as_tensor(probs, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: rel(p)[0], (x,), eps=1e-6, atol=1e-5)


def test_layout_columns_and_parts_are_checked(tables):
    f = ArchFeatures("nasbench-macro", tables["nasbench-macro"], ("counts", "table")).fit()
    npos = len(get_space("nasbench-macro").positions)
    assert list(f.layout_.names[:3]) == ["log_madds", "log_params", "n_layers"]
    assert list(f.layout_.names[3 + 2 * npos: 7 + 2 * npos]) == ["log_table_sum", "table_sum",
                                                                 "stem_ms", "head_ms"]
    with pytest.raises(ValueError, match="non-empty subset"):
        FeatureLayout.build(f.compiled_, ("counts", "latency"))


@pytest.mark.parametrize("make", [
    lambda t: ResidualLatency("nasbench-macro", t, model="ridge", parts=("encoding", "counts")),
    lambda t: ResidualLatency("nasbench-macro", t, model="huber"),
    lambda t: LatencyModel("nasbench-macro", None, model="ridge", parts=("counts",)),
])
def test_relaxed_learned_latency_equals_predict_on_onehots(make, tables):
    sp = get_space("nasbench-macro")
    idx = sp.sample_indices(np.random.default_rng(1), 200)
    t = tables["nasbench-macro"]
    y = 1.1 * ArchFeatures("nasbench-macro", t, ("table",)).fit().table_sum(idx) * \
        np.exp(0.02 * np.random.default_rng(2).standard_normal(len(idx)))
    est = make(t).fit(idx, y)
    mod, info = relaxed_latency(est)
    assert info["kind"] == "expected-features"
    with torch.no_grad():
        got = mod(torch.as_tensor(sp.onehot(idx[:30]))).numpy()
    np.testing.assert_allclose(got, est.predict(idx[:30]), rtol=1e-9)


@pytest.mark.parametrize("model, cls", [("ridge", RidgeCV), ("huber", HuberRegressor)])
def test_loaded_linear_predictor_is_a_real_fitted_pipeline(model, cls, tables, tmp_path):
    sp = get_space("nasbench-macro")
    t = tables["nasbench-macro"]
    idx = sp.sample_indices(np.random.default_rng(4), 300)
    y = 1.2 * ArchFeatures("nasbench-macro", t, ("table",)).fit().table_sum(idx)
    est = ResidualLatency("nasbench-macro", t, model=model).fit(idx, y * (1 + 0.01 * idx[:, 0]))
    save_predictor(est, tmp_path / "p", profile="test")
    # files written before the "linear" key called it "ridge" (and had no alpha)
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "p", old)
    state = meta["fitted"].pop("linear")
    state.pop("alpha")
    meta["fitted"]["ridge"] = state
    (old / "meta.json").write_text(json.dumps(meta))
    F = est.features_.transform(idx[:20])
    for path in (tmp_path / "p", old):
        again = load_predictor(path)
        reg = again.regressor_
        assert isinstance(reg, Pipeline) and isinstance(reg[0], StandardScaler)
        assert isinstance(reg[-1], cls)
        assert reg.get_params()["steps"][1][1] is reg[-1] and clone(reg) is not reg
        np.testing.assert_allclose(reg.predict(F), est.regressor_.predict(F), rtol=1e-12)
        np.testing.assert_allclose(again.predict(idx[:20]), est.predict(idx[:20]), rtol=1e-12)
        mod, info = relaxed_latency(again)  # one head shape: the real pipeline
        assert info["kind"] == "expected-features"
    if model == "ridge":  # RidgeCV keeps the alpha it chose
        assert load_predictor(tmp_path / "p").regressor_[-1].alpha_ == est.regressor_[-1].alpha_


def test_every_shipped_predictor_folder_loads():
    folders = sorted(p.parent for p in Path(PREDICTORS_DIR).glob("*/*/meta.json"))
    assert folders
    for d in folders:
        est = load_predictor(d, space=d.name, profile=d.parent.name)
        idx = get_space(d.name).sample_indices(np.random.default_rng(0), 20)
        pred = est.predict(idx)
        assert np.all(np.isfinite(pred)) and np.all(pred > 0), d
        assert est.get_params()["space"] == d.name
