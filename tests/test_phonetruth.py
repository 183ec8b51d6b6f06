"""surrogate.predict.phonetruth: published phone timings as groups, scoring, priors.

The grouping is checked on a small frame built here and on the real published data
(skipped when ../shared lacks it); scoring and priors on synthetic groups.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")
pytest.importorskip("sklearn")

from surrogate.datasets import ENV_BENCHMARKS, ENV_REFERENCE, benchmarks_dir, reference_dir  # noqa: E402
from surrogate.datasets.phones import BENCH, PUBLISHED, load_published_phones  # noqa: E402
from surrogate.predict import phonetruth as pt  # noqa: E402
from surrogate.predict.crossdevice import CrossDevicePrior  # noqa: E402
from surrogate.predict.phonetruth import (CHOSEN, UNSTATED, Group, lodo_prior,  # noqa: E402
                                          method_fitter, score, truth_groups)


@pytest.fixture(scope="module")
def published():
    for p, env in ((reference_dir() / PUBLISHED, ENV_REFERENCE), (benchmarks_dir() / BENCH, ENV_BENCHMARKS)):
        if not p.is_file():
            pytest.skip(f"{p} is absent (set ${env})")
    return load_published_phones()


def _row(arch, source, device, cores, dtype, ms, weak=()):
    return {"arch": arch, "arch_name": None if arch is None else f"name-{arch}", "source": source,
            "device": device, "cores": cores, "dtype": dtype, "latency_ms": ms, "weak": weak}


def test_truth_groups_on_a_small_frame():
    rows = [_row(f"a{i}", "paper", "pixel1", "1large", "fp32", 10.0 + i) for i in range(4)]
    rows += [_row("a0", "paper", "pixel1", "1large", "fp32", 20.0, ("DERIVED",)),  # a repeat
             _row("a0", "paper", "pixel1", "1large", "fp32", 30.0),
             _row(None, "paper", "pixel1", "1large", "fp32", 1.0)]  # not built: left out
    rows += [_row(f"a{i}", "readme", "pixel1", "1large", "fp32", 100.0 + i) for i in range(3)]
    rows += [_row(f"a{i}", "readme", "pixel1", None, None, 50.0 + i) for i in range(3)]
    rows += [_row(f"a{i}", "bench", "s10", "gpu", "fp32", 5.0 + i) for i in range(4)]
    df = pd.DataFrame(rows)
    g = truth_groups(df, min_rows=3)
    assert set(g) == {"paper/pixel1/1large/fp32", "readme/pixel1/1large/fp32",
                      f"readme/pixel1/{UNSTATED}/{UNSTATED}"}
    p = g["paper/pixel1/1large/fp32"]
    assert p.arch == ["a0", "a1", "a2", "a3"] and p.names == [f"name-a{i}" for i in range(4)]
    np.testing.assert_array_equal(p.y, [20.0, 11.0, 12.0, 13.0])  # a0: median of 10, 20, 30
    assert (p.device, p.dtype, p.weak, p.n) == ("pixel1", "fp32", 1, 4)
    np.testing.assert_array_equal(g["readme/pixel1/1large/fp32"].y, [100.0, 101.0, 102.0])  # no paper row
    u = g[f"readme/pixel1/{UNSTATED}/{UNSTATED}"]
    assert u.dtype == UNSTATED and u.n == 3
    assert set(truth_groups(df, min_rows=4)) == {"paper/pixel1/1large/fp32"}
    assert "bench/s10/gpu/fp32" in truth_groups(df, min_rows=3, include_gpu=True)


def test_truth_groups_on_published_data(published):
    df = published
    groups = truth_groups(df)
    assert len(groups) > 10 and all(g.n >= 8 for g in groups.values())
    assert not any("/gpu/" in k for k in groups)
    d = df[df["arch"].notna()].copy()
    d["cores"], d["dtype"] = d["cores"].fillna(UNSTATED), d["dtype"].fillna(UNSTATED)
    for key, g in groups.items():
        src, dev, cores, dt = key.split("/")
        assert (g.device, g.dtype) == (dev, dt) and len(set(g.arch)) == g.n == len(g.names)
        rows = d[(d["source"] == src) & (d["device"] == dev) & (d["cores"] == cores) & (d["dtype"] == dt)]
        med = rows.groupby("arch")["latency_ms"].median()  # only this source's rows
        assert set(med.index) == set(g.arch)
        np.testing.assert_allclose(g.y, med.loc[g.arch].to_numpy())
    few = truth_groups(df, min_rows=3)
    assert set(groups) < set(few) and all(g.n >= 3 for g in few.values())
    assert f"fbnet_paper/s8/{UNSTATED}/{UNSTATED}" in few  # the FBNet paper states neither
    assert any(k.endswith("/gpu/fp32") for k in truth_groups(df, include_gpu=True))


def test_score_of_a_perfect_method():
    y = np.array([3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0, 233.0])
    out = score(lambda tr, te: y[te], y, ks=(3, 5), draws=5)
    assert out["loo_mape"] == 0 and out["loo_max"] == 0 and out["spearman"] == pytest.approx(1.0)
    assert out["k3_mape"] == 0 and out["k5_mape"] == 0 and out["n"] == 10
    assert out["loo_pred"] == y.tolist()
    off = score(lambda tr, te: 1.1 * y[te], y, ks=(3,), draws=5)
    assert off["loo_mape"] == pytest.approx(0.1) and off["k3_mape"] == pytest.approx(0.1)
    assert math.isnan(score(lambda tr, te: y[te], y[:4], ks=(3,), draws=2)["k3_mape"])  # n <= k + 1


def test_k_shot_draws_never_score_on_their_training_rows():
    y = np.linspace(1.0, 3.0, 12)
    calls = []

    def fit(tr, te):
        calls.append((np.array(tr), np.array(te)))
        return y[te]

    score(fit, y, ks=(3, 5), draws=7, seed=3)
    loo, kshot = calls[:12], calls[12:]
    assert [list(te) for _, te in loo] == [[i] for i in range(12)]
    for tr, te in loo:
        assert te[0] not in tr and len(tr) == 11
    assert [len(tr) for tr, _ in kshot] == [3] * 7 + [5] * 7
    for tr, te in kshot:
        assert not set(tr) & set(te) and len(set(tr)) == len(tr) and len(te) >= 12 // 2


# -- priors ------------------------------------------------------------------------------
def _F(n: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    return np.column_stack([r.uniform(0.1, 2, (n, 6)), r.uniform(1, 5, n), r.integers(40, 80, n), np.ones(n)])


def _group(key, theta, n=10, seed=0, arch=None):
    src, dev, cores, dt = key.split("/")
    F = _F(n, seed)
    y = F @ np.asarray(theta, float) * np.exp(0.03 * np.random.default_rng(seed + 99).standard_normal(n))
    arch = arch or [f"n{i}" for i in range(n)]
    return Group(key, dev, dt, [f"net-{a}" for a in arch], list(arch), y, F={"kernel": F},
                 madds=F[:, :6].sum(1) * 1e8, host_e2e=np.full(n, math.nan))


@pytest.fixture
def groups():
    t = np.array([1.0, 1.2, 2.0, 0.8, 1.0, 3.0, 0.0, 0.0, 0.1])
    gs = [_group("p/A/1large/fp32", t * [9, 1, 1, 9, 9, 1, 0, 0, 1], seed=1),  # the target device
          _group("q/A/unstated/fp32", t * [1, 9, 9, 1, 1, 9, 0, 0, 1], seed=2),  # same phone, other source
          _group("p/B/1large/fp32", t, seed=3), _group("q/C/1large/fp32", 1.5 * t[::-1], seed=4),
          _group("q/D/1large/int8", 0.3 * t, seed=5),
          _group("r/E/1large/fp32", 2 * t, n=4, seed=6, arch=["n0", "n1", "x2", "x3"])]
    return {g.key: g for g in gs}


def _expected(gs, exclude=frozenset()):
    fits = []
    for g in gs:
        keep = np.array([a not in exclude for a in g.arch])
        if keep.sum() >= 3:
            fits.append((g.F["kernel"][keep], g.y[keep]))
    return CrossDevicePrior(lam=1.0).fit(fits)


def test_lodo_prior_leaves_out_the_target_device(groups):
    target = groups["p/A/1large/fp32"]
    pr = lodo_prior(groups, target, lam=1.0)
    other = [groups[k] for k in ("p/B/1large/fp32", "q/C/1large/fp32", "r/E/1large/fp32")]
    assert pr.n_groups_ == 3 and pr.lam_ == 1.0
    want = _expected(other)
    np.testing.assert_allclose(pr.theta_, want.theta_)
    np.testing.assert_allclose(pr.sources_, want.sources_)
    with_a = _expected(other + [target, groups["q/A/unstated/fp32"]])
    assert not np.allclose(pr.theta_, with_a.theta_)  # including device A would show
    assert lodo_prior(groups, groups["q/D/1large/int8"], lam=1.0) is None  # no other int8 device
    assert lodo_prior(groups, target, lam="auto").n_groups_ == 3


def test_lodo_prior_leaves_out_excluded_networks(groups):
    target = groups["p/A/1large/fp32"]
    ex = {"n0", "n1"}
    pr = lodo_prior(groups, target, lam=1.0, exclude=ex)
    assert pr.n_groups_ == 2  # E keeps only 2 networks: dropped
    want = _expected([groups["p/B/1large/fp32"], groups["q/C/1large/fp32"]], ex)
    np.testing.assert_allclose(pr.sources_, want.sources_)
    full = lodo_prior(groups, target, lam=1.0)
    assert not np.allclose(pr.sources_, full.sources_[:2])


def test_method_fitter_asks_priors_without_the_scored_networks(groups):
    g = groups["p/A/1large/fp32"]
    asked = []

    def prior_for(ex):
        asked.append(set(ex))
        return lodo_prior(groups, g, lam=1.0, exclude=ex)

    fit = method_fitter(CHOSEN, g, prior_for=prior_for)
    tr, te = np.arange(5), np.arange(5, 10)
    pred = fit(tr, te)
    assert asked == [{g.arch[i] for i in te}] and pred.shape == (5,) and (pred > 0).all()
    for name in pt.BASELINES[:3] + ("roofline",):
        assert np.isfinite(method_fitter(name, g)(tr, te)).all()
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        method_fitter("nope", g)


def test_evaluate_group_priors_never_see_the_target(groups, monkeypatch):
    seen = []
    real = pt.lodo_prior

    def spy(gs, target, scheme="kernel", lam="auto", exclude=frozenset()):
        seen.append((target.key, frozenset(exclude)))
        return real(gs, target, scheme, 1.0, exclude)

    monkeypatch.setattr(pt, "lodo_prior", spy)
    res = pt.evaluate_group(groups, "p/A/1large/fp32", ks=(3,), draws=3)
    assert {CHOSEN, f"{CHOSEN}[factors]", "ratio", "roofline"} <= set(res)
    assert "published-pixel" not in res  # no measured host end-to-end times
    assert all(np.isfinite(r["loo_mape"]) for r in res.values())
    assert {k for k, _ in seen} == {"p/A/1large/fp32"}
    assert {frozenset({f"n{i}"}) for i in range(10)} <= {ex for _, ex in seen}  # each LOO network
