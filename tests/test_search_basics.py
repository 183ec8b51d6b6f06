"""Search basics: MnasNet reward, Pareto tools, accuracy objectives (anb surrogate, macro lookup)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.pareto import (compare_fronts, dominated_share, dominates, epsilon_additive,
                           hypervolume_2d, hypervolume_history, igd, lat_acc_ranks,
                           non_dominated_sort, pareto_front, pareto_mask)
from search.reward import MnasReward
from space import format_arch, get_space


# -- reward -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lat, soft, hard", [
    (80.0, 0.75, 0.75),                      # LAT = T: both give ACC
    (160.0, 0.75 * 0.952638, 0.75 / 2),      # 2T: 2**-0.07 = exp(-0.0485203) = 0.952638
    (40.0, 0.75 * 1.049717, 0.75),           # T/2: 0.5**-0.07 = 1.049717; hard: alpha = 0
])
def test_reward_hand_computed(lat, soft, hard):
    assert MnasReward.soft(80.0)(0.75, lat) == pytest.approx(soft, rel=1e-6)
    assert MnasReward.hard(80.0)(0.75, lat) == pytest.approx(hard, rel=1e-12)
    assert isinstance(MnasReward.soft(80.0)(0.75, lat), float)


def test_reward_vectorised_and_exponent():
    r = MnasReward.soft(75.0)
    acc = np.array([0.7, 0.7, 0.7])
    lat = np.array([37.5, 75.0, 150.0])
    out = r(acc, lat)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [r(0.7, x) for x in lat])
    # broadcasting a scalar accuracy over a latency grid, and a 2-D grid
    grid = r(np.linspace(0.5, 0.8, 4)[:, None], np.array([10.0, 75.0, 200.0])[None, :])
    assert grid.shape == (4, 3)
    h = MnasReward(75.0, alpha=0.0, beta=-1.0)
    np.testing.assert_array_equal(h.exponent(np.array([74.0, 75.0, 76.0])), [0.0, 0.0, -1.0])
    assert MnasReward.from_name("hard", 75) == h
    # doubling latency under the soft constraint costs about 5% relative accuracy
    assert 1 - r(1.0, 150.0) == pytest.approx(0.0474, abs=1e-3)


@pytest.mark.parametrize("call, match", [
    (lambda: MnasReward(0.0, -0.07, -0.07), "target_ms"),
    (lambda: MnasReward(-5.0, -0.07, -0.07), "target_ms"),
    (lambda: MnasReward(float("nan"), -0.07, -0.07), "target_ms"),
    (lambda: MnasReward(75.0, "a", -0.07), "alpha"),
    (lambda: MnasReward(75.0, -0.07, True), "beta"),
    (lambda: MnasReward.soft(75.0)(75.3, 80.0), "percentage"),
    (lambda: MnasReward.soft(75.0)(np.array([0.5, 75.3]), 80.0), "percentage"),
    (lambda: MnasReward.soft(75.0)(-0.1, 80.0), "accuracy"),
    (lambda: MnasReward.soft(75.0)(float("nan"), 80.0), "accuracy"),
    (lambda: MnasReward.soft(75.0)(0.5, 0.0), "latency_ms"),
    (lambda: MnasReward.soft(75.0)(0.5, -3.0), "latency_ms"),
    (lambda: MnasReward.soft(75.0)(0.5, float("inf")), "latency_ms"),
    (lambda: MnasReward.soft(75.0)(np.ones(3) * 0.5, np.ones(2)), "broadcast"),
    (lambda: MnasReward.soft(75.0)("x", 10.0), "accuracy"),
    (lambda: MnasReward.from_name("medium", 75.0), "soft"),
])
def test_reward_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- non-dominated sorting ---------------------------------------------------------------------
def brute_ranks(f: np.ndarray) -> np.ndarray:
    """O(n^2) peeling with the definition of dominance (minimisation)."""
    n = len(f)
    ranks = np.full(n, -1)
    r = 0
    while (ranks < 0).any():
        left = np.flatnonzero(ranks < 0)
        front = [i for i in left if not any(dominates(f[j], f[i]) for j in left if j != i)]
        ranks[front] = r
        r += 1
    return ranks


points_strategy = st.integers(2, 4).flatmap(lambda k: st.lists(
    st.lists(st.integers(0, 6), min_size=k, max_size=k), min_size=0, max_size=40))


@settings(max_examples=150, deadline=None)
@given(pts=points_strategy)
def test_non_dominated_sort_matches_brute_force(pts):
    f = np.array(pts, dtype=float).reshape(len(pts), -1 if pts else 2)
    got = non_dominated_sort(f)
    np.testing.assert_array_equal(got, brute_ranks(f))
    np.testing.assert_array_equal(pareto_mask(f), got == 0)


@settings(max_examples=50, deadline=None)
@given(pts=st.lists(st.tuples(st.floats(1, 100), st.floats(0, 1)), min_size=1, max_size=60))
def test_lat_acc_ranks_and_front(pts):
    f = np.array(pts)
    ranks = lat_acc_ranks(f[:, 0], f[:, 1])
    np.testing.assert_array_equal(ranks, brute_ranks(np.stack([f[:, 0], -f[:, 1]], axis=1)))
    np.testing.assert_array_equal(ranks, non_dominated_sort(f, minimise=(True, False)))
    idx = pareto_front(f[:, 0], f[:, 1])
    assert set(idx) == set(np.flatnonzero(ranks == 0))
    assert (np.diff(f[idx, 0]) >= 0).all() and (np.diff(f[idx, 1]) >= 0).all()


def test_non_dominated_sort_large_and_bad_input():
    rng = np.random.default_rng(0)
    f = rng.random((20000, 2))
    r = non_dominated_sort(f)  # speed is bench's business; 20,000 points must just work
    assert r.min() == 0 and len(np.unique(r)) > 10
    with pytest.raises(ValueError, match="2-D"):
        non_dominated_sort(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        non_dominated_sort([[0.0, np.nan]])
    with pytest.raises(ValueError, match="minimise"):
        non_dominated_sort(np.zeros((3, 2)), minimise=(True,))
    with pytest.raises(ValueError, match="differ in length"):
        pareto_front([1.0, 2.0], [0.5])


# -- hypervolume ------------------------------------------------------------------------------
def brute_hv(lat, acc, rl, ra) -> float:
    """Area of the union of the boxes [l, rl] x [ra, a] by coordinate compression."""
    keep = (lat < rl) & (acc > ra)
    lat, acc = lat[keep], acc[keep]
    if not lat.size:
        return 0.0
    xs = np.unique(np.append(lat, rl))
    ys = np.unique(np.append(acc, ra))
    area = 0.0
    for x0, x1 in zip(xs[:-1], xs[1:]):
        for y0, y1 in zip(ys[:-1], ys[1:]):
            if ((lat <= x0) & (acc >= y1)).any():
                area += (x1 - x0) * (y1 - y0)
    return area


hv_points = st.lists(st.tuples(st.integers(1, 12), st.integers(0, 12)), min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(pts=hv_points, rl=st.integers(5, 14), ra=st.integers(0, 4))
def test_hypervolume_matches_brute_force_and_history(pts, rl, ra):
    f = np.array(pts, dtype=float).reshape(-1, 2) / np.array([1.0, 12.0])  # accuracy in [0, 1]
    ra = ra / 12.0
    hv = hypervolume_2d(f[:, 0], f[:, 1], ref_latency=rl, ref_accuracy=ra)
    assert hv == pytest.approx(brute_hv(f[:, 0], f[:, 1], rl, ra), abs=1e-12)
    assert hypervolume_2d(f, ref_latency=rl, ref_accuracy=ra) == hv
    hist = hypervolume_history(f, ref_latency=rl, ref_accuracy=ra)
    recompute = [hypervolume_2d(f[: i + 1], ref_latency=rl, ref_accuracy=ra) for i in range(len(f))]
    np.testing.assert_allclose(hist, recompute, atol=1e-12)
    assert (np.diff(hist) >= -1e-12).all()


def test_hypervolume_known_values_and_speed():
    # a staircase: (1, 0.5), (2, 0.7), (4, 0.9), reference (5, 0.0)
    pts = np.array([[2, 0.7], [1, 0.5], [4, 0.9], [3, 0.6]])  # (3, 0.6) is dominated by (2, 0.7)
    assert hypervolume_2d(pts, ref_latency=5, ref_accuracy=0.0) == pytest.approx(
        1 * 0.5 + 2 * 0.7 + 1 * 0.9)
    assert hypervolume_2d(pts, ref_latency=5, ref_accuracy=0.6) == pytest.approx(2 * 0.1 + 1 * 0.3)
    assert hypervolume_2d(np.zeros((0, 2)), ref_latency=5, ref_accuracy=0) == 0.0
    with pytest.raises(ValueError, match="reference point"):
        hypervolume_2d(pts, ref_latency=float("inf"), ref_accuracy=0.0)
    with pytest.raises(ValueError, match="reference point"):
        hypervolume_2d(pts, ref_latency="x", ref_accuracy=0.0)
    rng = np.random.default_rng(1)
    lat = rng.uniform(1, 100, 10_000)
    acc = 0.5 + 0.4 * (1 - np.exp(-lat / 30)) * rng.uniform(0.8, 1.0, lat.size)
    hist = hypervolume_history(lat, acc, ref_latency=120.0, ref_accuracy=0.0)
    assert hist[-1] == pytest.approx(hypervolume_2d(lat, acc, ref_latency=120.0, ref_accuracy=0.0))
    for i in (0, 10, 999, 5000):
        assert hist[i] == pytest.approx(
            hypervolume_2d(lat[: i + 1], acc[: i + 1], ref_latency=120.0, ref_accuracy=0.0))


def test_front_comparison_sanity():
    a = np.array([[10.0, 0.70], [20.0, 0.75], [40.0, 0.80]])
    same = compare_fronts(a, a, ref_latency=50, ref_accuracy=0.5)
    assert same["hv_ratio"] == pytest.approx(1.0)
    assert same["epsilon_additive"] == pytest.approx(0.0)
    assert same["share_a_dominated_by_b"] == 0.0 and same["igd"] == pytest.approx(0.0)
    worse = a + np.array([5.0, -0.02])  # slower and less accurate: dominated point by point
    c = compare_fronts(worse, a, ref_latency=50, ref_accuracy=0.5)
    assert c["hv_ratio"] < 1
    assert c["epsilon_additive"] > 0 and epsilon_additive(a, worse) <= 0
    assert c["share_a_dominated_by_b"] == 1.0 and c["share_b_dominated_by_a"] == 0.0
    assert c["igd"] > 0 and igd(a, a) == 0.0
    # unscaled additive epsilon: the worst of the two shifts in their own units
    assert epsilon_additive(worse, a) == pytest.approx(5.0)
    assert epsilon_additive(worse, a, scale=(100.0, 0.01)) == pytest.approx(2.0)
    assert dominated_share(a[:1], a) == 0.0
    with pytest.raises(ValueError, match="empty"):
        compare_fronts(np.zeros((0, 2)), a, ref_latency=50, ref_accuracy=0.5)
    with pytest.raises(ValueError, match="scale"):
        epsilon_additive(a, a, scale=(0.0, 1.0))


# -- NAS-Bench-Macro ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def macro(macro_json):
    from search.accuracy import MacroAccuracy

    return MacroAccuracy(macro_json)


def test_macro_exact_fronts(macro):
    assert macro.n_keys == 6561 and macro.n_networks == 3969
    t = macro.table()
    assert len(t["key"]) == 3969
    assert len(pareto_front(t["params"], t["accuracy"])) == 39   # SPEC section 3
    assert len(pareto_front(t["flops"], t["accuracy"])) == 35


def test_macro_lookups_and_equivalent_keys(macro, macro_json):
    raw = json.loads(macro_json.read_text())
    sp = get_space("nasbench-macro")
    assert macro.max_equivalent_spread == 0.0  # the benchmark repeats one record per class
    assert macro.lookup_key("02012100") == pytest.approx(raw["02012100"]["mean_acc"] / 100)
    # '01201122': stage 2 is (2, 0, 1) -> canonical (2, 1, 0); every equivalent key agrees
    eq = [k for k in raw if sp.canonical(sp.from_key(k)) == sp.canonical(sp.from_key("01201122"))]
    assert len(eq) == 2
    vals = {macro.lookup_key(k) for k in eq}
    assert len(vals) == 1
    assert vals.pop() == pytest.approx(raw["01210122"]["mean_acc"] / 100)
    rec = macro.record(sp.from_key("01201122"))
    assert rec["key"] == "01210122" and rec["keys"] == sorted(eq)
    assert rec["params"] == raw["01210122"]["params"]
    # the same network as an Arch, as a string, and as an index vector
    arch = sp.to_arch(sp.from_key("01201122"))
    assert macro(arch) == macro(format_arch(arch)) == macro(np.array(sp.from_key("01210122")))
    accs = macro.batch(np.array([sp.from_key(k) for k in list(raw)[:50]]))
    np.testing.assert_allclose(accs, [raw[k]["mean_acc"] / 100 for k in list(raw)[:50]])


def test_macro_errors(macro, tmp_path):
    from search.accuracy import MacroAccuracy, get_accuracy

    for bad in ("0120112", "01201123", "", 12345678):
        with pytest.raises(ValueError, match="key"):
            macro.lookup_key(bad)
    with pytest.raises(ValueError, match="not in space"):
        macro(get_space("anb").to_arch((0,) * 28))       # an anb network
    with pytest.raises(ValueError, match="decisions"):
        macro((0, 1, 2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MacroAccuracy(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="nas-bench-macro_cifar10.json"):
        MacroAccuracy(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"0120112x": {"mean_acc": 90}}')
    with pytest.raises(ValueError, match="not a NAS-Bench-Macro record"):
        MacroAccuracy(bad)
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        MacroAccuracy(bad)
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"01201122": {"mean_acc": 91.0, "params": 1, "flops": 2}}))
    small = get_accuracy("macro", data=part)
    assert small.lookup_key("01210122") == pytest.approx(0.91)
    with pytest.raises(ValueError, match="not in part.json"):
        small.lookup_key("22222222")


def test_missing_benchmark_path(monkeypatch):
    from search.accuracy import MacroAccuracy

    monkeypatch.delenv("MNAS_BENCHMARKS_DIR", raising=False)
    with pytest.raises(ValueError, match="MNAS_BENCHMARKS_DIR"):
        MacroAccuracy()


# -- caching ------------------------------------------------------------------------------------
def test_cache_counts_calls_and_file(macro_json, tmp_path):
    from search.accuracy import MacroAccuracy

    class Counting(MacroAccuracy):
        calls = 0

        def _evaluate(self, idx):
            type(self).calls += len(idx)
            return super()._evaluate(idx)

    sp = get_space("nasbench-macro")
    cache = tmp_path / "cache" / "macro.jsonl"
    m = Counting(macro_json, cache_path=cache)
    a = m.lookup_key("01201122")
    assert Counting.calls == 1 and m.n_evaluated == 1
    assert m.lookup_key("01201122") == a and m.lookup_key("01210122") == a  # equivalent key
    m(sp.to_arch(sp.from_key("01201122")))
    assert Counting.calls == 1
    m.batch([sp.from_key(k) for k in ("11111111", "11111111", "22222222", "01201122")])
    assert Counting.calls == 3  # one batch call evaluated the two new networks once each
    lines = cache.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["objective"] == "macro" for x in lines)
    # a fresh objective reads the file and evaluates nothing
    m2 = Counting(macro_json, cache_path=cache)
    assert m2.lookup_key("22222222") == m.lookup_key("22222222")
    assert m2.n_evaluated == 0 and Counting.calls == 3
    # lines of another fingerprint, and garbage, are ignored
    with open(cache, "a") as fh:
        fh.write(json.dumps({"objective": "macro", "fingerprint": "other", "arch": "x",
                             "accuracy": 0.5}) + "\n{broken\n")
    m3 = Counting(macro_json, cache_path=cache)
    assert m3.cache_skipped == 2 and len(m3.cached()) == 3


# -- Accel-NASBench surrogate -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def anb_obj():
    from search.accuracy import AnbAccuracy

    return AnbAccuracy()


def test_anb_loads_offline(anb_obj, monkeypatch):
    monkeypatch.delenv("MNAS_BENCHMARKS_DIR", raising=False)
    meta = anb_obj.meta
    for field in ("data", "split", "features", "metrics", "versions", "created", "model"):
        assert field in meta
    assert meta["data"]["license"] == "Apache-2.0" and meta["data"]["file"] == "anb_results.csv"
    assert meta["metrics"]["test"]["kendall_tau"] >= 0.85
    v = anb_obj("efficientnet-b0")
    assert 0.55 < v < 0.70  # 16-epoch proxy top-1 of B0 sits in the benchmark's upper range
    sp = get_space("anb")
    idx = sp.sample_indices(np.random.default_rng(0), 64)
    accs = anb_obj.batch(idx)
    assert accs.shape == (64,) and ((accs >= 0) & (accs <= 1)).all()
    assert anb_obj(sp.to_arch(idx[3])) == accs[3] == anb_obj(tuple(idx[3]))


def test_anb_test_split_tau_recomputed(anb_obj, anb_csv):
    from search.accuracy import anb_split, load_anb_csv, regression_metrics
    from surrogate.tables import file_sha256

    idx, y, _ = load_anb_csv(anb_csv)
    assert file_sha256(anb_csv) == anb_obj.meta["data"]["sha256"]
    _, _, te = anb_split(idx, anb_obj.meta["split"]["seed"])
    assert te.size == anb_obj.meta["split"]["n_test"]
    pred = anb_obj._evaluate(idx[te])
    met = regression_metrics(y[te], pred)
    assert met["kendall_tau"] >= 0.85
    assert met["kendall_tau"] == pytest.approx(anb_obj.meta["metrics"]["test"]["kendall_tau"],
                                               abs=1e-6)


def test_anb_artifact_checks(tmp_path):
    from search.accuracy import AnbAccuracy, package_data_dir

    src = package_data_dir()
    shutil.copy(src / "anb_accuracy.json", tmp_path / "m.json")
    meta = json.loads((src / "anb_accuracy.meta.json").read_text())
    with pytest.raises(FileNotFoundError, match="metadata"):
        AnbAccuracy(tmp_path / "m.json")
    bad = dict(meta, features={**meta["features"], "name": "anb-ordinal-v0", "width": 28})
    (tmp_path / "m.meta.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="feature definition"):
        AnbAccuracy(tmp_path / "m.json")
    wrong_sha = dict(meta, model={**meta["model"], "sha256": "0" * 64})
    (tmp_path / "m.meta.json").write_text(json.dumps(wrong_sha))
    with pytest.raises(ValueError, match="sha256"):
        AnbAccuracy(tmp_path / "m.json")
    (tmp_path / "m.meta.json").write_text(json.dumps(meta))
    ok = AnbAccuracy(tmp_path / "m.json")
    assert ok.fingerprint.startswith("xgb-")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AnbAccuracy(tmp_path / "nothing.json")
    with pytest.raises(ValueError, match="not in space"):
        ok(get_space("nasbench-macro").to_arch((1,) * 8))
    with pytest.raises(ValueError, match="expected an Arch"):
        ok(3.5)
    with pytest.raises(ValueError, match="out of range"):
        ok((9,) * 28)


def test_fit_anb_accuracy_small(anb_csv, tmp_path):
    from search.accuracy import AnbAccuracy, fit_anb_accuracy

    params = {"n_estimators": 60, "learning_rate": 0.2, "max_depth": 3, "tree_method": "hist"}
    meta = fit_anb_accuracy(anb_csv, tmp_path, seed=3, params=params)
    assert meta["split"]["seed"] == 3 and meta["data"]["rows"] == 5138
    assert meta["metrics"]["test"]["kendall_tau"] > 0.7
    obj = AnbAccuracy(tmp_path / "anb_accuracy.json")
    assert 0 <= obj("efficientnet-b0") <= 1
    with pytest.raises(ValueError, match="seed"):
        fit_anb_accuracy(anb_csv, tmp_path, seed="0")
    with pytest.raises(FileNotFoundError):
        fit_anb_accuracy(tmp_path / "nope.csv", tmp_path)


# -- registry and import weight ----------------------------------------------------------------------
def test_registry(macro_json):
    from search.accuracy import AnbAccuracy, accuracy_names, get_accuracy

    assert {"anb", "macro", "proxy-train"} <= set(accuracy_names())
    assert isinstance(get_accuracy("anb"), AnbAccuracy)
    assert get_accuracy("macro", json_path=macro_json).space.name == "nasbench-macro"
    with pytest.raises(ValueError, match="unknown accuracy"):
        get_accuracy("imagenet")
    with pytest.raises(ValueError, match="--data.*search.train.proxy"):
        get_accuracy("proxy-train")
    with pytest.raises(ValueError, match="unexpected keyword"):
        get_accuracy("anb", bogus=1)


def test_import_search_stays_light():
    code = ("import sys, search, search.reward, search.pareto, search.accuracy; "
            "print(sorted(m for m in ('xgboost', 'torch', 'scipy', 'sklearn', 'optuna') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reward_is_finite_over_a_grid():
    r = MnasReward.soft(75.0)
    lat, acc = np.meshgrid(np.geomspace(1e-3, 1e4, 50), np.linspace(0, 1, 11))
    out = r(acc, lat)
    assert np.isfinite(out).all() and (out >= 0).all()
    assert all(math.isclose(r(a, 75.0), a) for a in (0.0, 0.3, 1.0))
