"""predict() prices any network: members by the model, others as price_many does, in input order."""
from __future__ import annotations

import numpy as np
import pytest

from space.counting import count_madds
from space.reference import resolve_arch
from space.spaces import get_space

pytest.importorskip("xgboost")

OUTSIDE = ("mnasnet-a1@w0.75,r192", "mobilenetv2-1.0")


@pytest.fixture(scope="module")
def mnasnet():
    from surrogate.predict.workflow import shipped_predictor

    return shipped_predictor("cpu-litert", "mnasnet")


def _members(space: str, n: int = 3, seed: int = 7) -> np.ndarray:
    return get_space(space).sample_indices(np.random.default_rng(seed), n)


def _check_mixed(est, idx: np.ndarray) -> np.ndarray:
    """Mixed inputs (index vector, Arch, string, reference names) predict as price_many prices."""
    sp = get_space(est.space)
    arch = sp.to_arch(idx[1])
    mixed = [idx[0], arch, *OUTSIDE, str(sp.to_arch(idx[2]))]
    got = est.predict(mixed)
    assert got.shape == (len(mixed),)
    priced = est.price_many([sp.to_arch(idx[0]), arch, *OUTSIDE, sp.to_arch(idx[2])])
    assert got.tolist() == [p.ms for p in priced]
    assert [p.method for p in priced[2:4]] != ["model", "model"]
    assert got[[0, 1, 4]].tolist() == est.predict(idx[:3]).tolist()  # members: the model alone
    assert got[0] == est.predict(idx[:1])[0] and got[1] == est.predict([arch])[0]
    assert got[2] == est.predict(OUTSIDE[0])[0] == est.price(OUTSIDE[0]).ms
    return got


def test_shipped_predictor_predicts_members_and_other_networks(mnasnet):
    got = _check_mixed(mnasnet, _members("mnasnet"))
    assert np.all(got > 0)
    # a reference network inside the space stays on the model
    a1 = resolve_arch("mnasnet-a1")
    assert mnasnet.predict(["mnasnet-a1"])[0] == mnasnet.predict(
        np.array([get_space("mnasnet").from_arch(a1)]))[0]


def test_shipped_predictor_loaded_from_its_folder_predicts_the_same(mnasnet):
    from surrogate.paths import shipped_predictor_dir
    from surrogate.predict.persist import load_predictor

    est = load_predictor(shipped_predictor_dir("cpu-litert", "mnasnet"))
    idx = _members("mnasnet", seed=11)
    assert _check_mixed(est, idx).tolist() == mnasnet.predict(
        [idx[0], get_space("mnasnet").to_arch(idx[1]), *OUTSIDE,
         str(get_space("mnasnet").to_arch(idx[2]))]).tolist()


def test_flops_linear_predicts_any_network_by_madds():
    from surrogate.predict.estimators import FlopsLinear

    sp = get_space("mnasnet")
    idx = _members("mnasnet", 20, seed=0)
    y = np.array([count_madds(sp.to_arch(i)) for i in idx]) * 2e-8 + 1.0
    est = FlopsLinear("mnasnet").fit(idx, y)
    got = _check_mixed(est, idx)
    assert got[3] == pytest.approx(count_madds(resolve_arch("mobilenetv2-1.0")) * 2e-8 + 1.0, rel=1e-6)


@pytest.mark.parametrize("calibrate", [False, True])
def test_table_sum_predicts_any_network_from_operators(calibrate):
    from surrogate.predict.estimators import TableSum

    idx = _members("mnasnet", 12, seed=2)
    plain = TableSum("mnasnet", table="shipped:cpu-litert").fit()
    y = plain.predict(idx) * 1.1 + 0.5
    est = TableSum("mnasnet", table="shipped:cpu-litert", calibrate=calibrate).fit(idx, y)
    got = _check_mixed(est, idx)
    assert np.all(got > 0)


def test_predictor_without_a_table_refuses_a_non_member_by_name():
    from surrogate.predict.estimators import LatencyModel

    idx = _members("mnasnet", 30, seed=4)
    y = np.exp(np.random.default_rng(0).normal(size=len(idx))) + 5.0
    est = LatencyModel("mnasnet", model="ridge", parts=("encoding", "counts")).fit(idx, y)
    assert est.predict([idx[0]])[0] == est.predict(idx[:1])[0]
    with pytest.raises(ValueError, match="mobilenetv2-1.0") as e:
        est.predict([idx[0], "mobilenetv2-1.0"])
    assert "no operator table" in str(e.value)


def test_bad_items_and_empty_inputs_are_refused(mnasnet):
    with pytest.raises(ValueError, match="item 1: expected an Arch"):
        mnasnet.predict([_members("mnasnet")[0], 3.5])
    with pytest.raises(ValueError, match="no architectures given"):
        mnasnet.predict([])
    with pytest.raises(ValueError, match="out of range"):
        mnasnet.predict([np.full(get_space("mnasnet").n_decisions, 99)])
