"""Issue J: a new device from K timings (MultiSourceTransfer, suggest_timings), the
predict-only device profiles, and the CLI path, on the shared HELP / Accel-NASBench data."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from surrogate.predict.metrics import latency_metrics
from surrogate.predict.multisource import MultiSourceTransfer
from surrogate.predict.suggest import suggest_timings, suggestion_pool
from surrogate.predict.zoo import PUBLISHED, published_names

HELP = ("pixel2", "samsung_a50", "pixel3", "raspi4", "gold_6226", "2080ti_1", "2080ti_32", "titanx_1")


def mnas(*args):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def help_ds(fbnet_csv):
    from surrogate.datasets import load_help_fbnet

    return load_help_fbnet(fbnet_csv)


def _sources(target: str) -> dict:
    from surrogate.predict.workflow import shipped_predictor

    return {d: shipped_predictor(d, "fbnet") for d in HELP if d != target}


# -- the predict-only profiles ----------------------------------------------------------
def test_every_published_device_ships_a_small_json_predictor_that_predicts():
    from space.spaces import get_space
    from surrogate.predict.workflow import default_predictor_dir, shipped_predictor

    assert set(HELP) <= set(published_names()) and {"a100", "tpuv3"} <= set(published_names())
    for name, dev in PUBLISHED.items():
        folder = default_predictor_dir(name, dev.space)
        files = list(folder.iterdir())
        assert files and all(f.suffix == ".json" for f in files), (name, files)
        assert sum(f.stat().st_size for f in files) < 100_000, name
        meta = json.loads((folder / "meta.json").read_text())
        zoo = meta["zoo"]
        assert zoo["license"] == dev.license and len(zoo["provenance"]["sha256"]) == 64
        assert zoo["validation"]["chosen"]["spearman"] > 0.8, name
        est = shipped_predictor(name, dev.space)
        pred = est.predict(get_space(dev.space).sample_indices(np.random.default_rng(1), 64))
        assert np.all(np.isfinite(pred)) and np.all(pred > 0), name


def test_published_provenance_matches_the_shared_file(fbnet_csv):
    from surrogate.tables import file_sha256
    from surrogate.predict.workflow import default_predictor_dir

    meta = json.loads((default_predictor_dir("raspi4", "fbnet") / "meta.json").read_text())
    assert meta["zoo"]["provenance"]["sha256"] == file_sha256(fbnet_csv)
    assert meta["profile"] == "raspi4" and meta["space"] == "fbnet"


# -- MultiSourceTransfer ----------------------------------------------------------------
def test_estimator_contract():
    est = MultiSourceTransfer("fbnet", sources={"a": lambda X: np.ones(len(X))}, min_residual=7)
    assert clone(est).get_params()["min_residual"] == 7
    assert not hasattr(est, "weights_")
    with pytest.raises(ValueError, match="modes"):
        MultiSourceTransfer("fbnet", sources={"a": lambda X: np.ones(len(X))},
                            modes=("cubic",)).fit(np.zeros((5, 22), dtype=np.int64), np.ones(5))


def test_raspi4_from_other_devices_beats_every_single_source_and_grows_a_residual(help_ds):
    X, y = help_ds.canonical, help_ds.latency_ms("raspi4")
    srcs = _sources("raspi4")
    rng = np.random.default_rng(3)
    rho = {}
    for k in (5, 100):
        pick = rng.choice(len(y), k, replace=False)
        te = np.setdiff1d(np.arange(len(y)), pick)
        est = MultiSourceTransfer("fbnet", sources=srcs)
        assert est.fit(X[pick], y[pick]) is est
        rho[k] = latency_metrics(y[te], est.predict(X[te]))["spearman"]
        if k == 5:
            assert not np.isfinite(est.alpha_)  # too few timings for a residual
        else:
            assert np.isfinite(est.alpha_) and np.any(est.residual_coef_ != 0)
    from scipy.stats import spearmanr

    te = np.setdiff1d(np.arange(len(y)), pick)
    best_raw = max(spearmanr(s.predict(X[te]), y[te])[0] for s in srcs.values())
    assert rho[100] > best_raw + 0.02 and rho[100] > rho[5]
    assert rho[100] > 0.97


def test_save_and_load_round_trip(help_ds, tmp_path):
    from surrogate.predict.persist import load_predictor, save_predictor

    X, y = help_ds.canonical, help_ds.latency_ms("gold_6226")
    pick = np.random.default_rng(0).choice(len(y), 60, replace=False)
    est = MultiSourceTransfer("fbnet", sources=_sources("gold_6226")).fit(X[pick], y[pick])
    save_predictor(est, tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["fitted"]["sources"]["raspi4"] == {"profile": "raspi4", "space": "fbnet"}
    back = load_predictor(tmp_path / "p", space="fbnet")
    np.testing.assert_allclose(back.predict(X[:200]), est.predict(X[:200]), rtol=1e-10)
    assert back.summary() == est.summary()


# -- which K to time --------------------------------------------------------------------
@pytest.mark.parametrize("method", ["doptimal", "kcenter"])
def test_suggestions_are_distinct_deterministic_and_spread(method):
    from space.spaces import get_space

    pool = suggestion_pool("fbnet", 1500, seed=0)
    a = suggest_timings("fbnet", 30, pool=pool, method=method)
    assert len(set(a.tolist())) == 30 and np.array_equal(a, suggest_timings("fbnet", 30, pool=pool,
                                                                             method=method))
    # the picks cover more (position, choice) pairs than 30 random members do on average
    oh = get_space("fbnet").onehot(pool)
    rand = np.mean([(oh[np.random.default_rng(s).choice(len(pool), 30, replace=False)].sum(0) > 0).sum()
                    for s in range(20)])
    assert (oh[a].sum(0) > 0).sum() >= rand
    with pytest.raises(ValueError, match="method"):
        suggest_timings("fbnet", 3, pool=pool, method="best")


# -- the CLI path -----------------------------------------------------------------------
def test_cli_fit_predict_suggest_end_to_end(help_ds, tmp_path):
    from space.spaces import get_space

    sp = get_space("fbnet")
    y = help_ds.latency_ms("raspi4")
    p = mnas("suggest-timings", "--space", "fbnet", "-k", "20", "--transfer-from",
             "pixel3,gold_6226,samsung_a50", "--pool-size", "800")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.split()) == 20 and all(sp.from_arch(__import__("space").parse_arch(s))
                                               for s in p.stdout.split())
    timings = tmp_path / "t.csv"
    with open(timings, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "ms"])
        for i in range(40):
            w.writerow([str(sp.to_arch(help_ds.canonical[i])), f"{y[i]:.4f}"])
    archs = tmp_path / "a.txt"
    archs.write_text("\n".join(str(sp.to_arch(help_ds.canonical[i])) for i in range(40, 240)))
    out = tmp_path / "pred"
    p = mnas("fit", "--space", "fbnet", "--transfer-from", "pixel3,gold_6226,samsung_a50,2080ti_1",
             "--timings", str(timings), "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["train_rows"] == 40
    p = mnas("predict", "--predictor", str(out), "--space", "fbnet", "--archs", str(archs), "--json")
    assert p.returncode == 0, p.stderr
    pred = np.array([r["latency_ms"] for r in json.loads(p.stdout)])
    m = latency_metrics(y[40:240], pred)
    assert m["mape"] < 0.06 and m["spearman"] > 0.95, m
    p = mnas("predict", "--profile", "pixel3", "--space", "fbnet", "--archs", str(archs), "--json")
    assert p.returncode == 0, p.stderr
    ms = np.array([r["latency_ms"] for r in json.loads(p.stdout)])
    np.testing.assert_allclose(ms, help_ds.latency_ms("pixel3")[40:240], rtol=0.05)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,latency\nx,1\n")
    p = mnas("fit", "--space", "fbnet", "--transfer-from", "pixel3", "--timings", str(bad),
             "-o", str(tmp_path / "o"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "bad.csv" in p.stderr and "'ms'" in p.stderr
    bad.write_text("arch,ms\nnot-an-arch,1\n")
    p = mnas("fit", "--space", "fbnet", "--transfer-from", "pixel3", "--timings", str(bad),
             "-o", str(tmp_path / "o"))
    assert p.returncode == 2 and "bad.csv:2: column arch" in p.stderr
    p = mnas("fit", "--space", "fbnet", "--transfer-from", "nosuchdevice", "--timings", str(bad),
             "-o", str(tmp_path / "o"))
    assert p.returncode == 2 and "nosuchdevice" in p.stderr
    p = mnas("predict", "--profile", "pixel3", "--space", "anb", "mnasnet-a1")
    assert p.returncode == 2 and "fbnet" in p.stderr


def test_cli_devices_lists_predict_only_profiles():
    p = mnas("devices", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["profile"]: r for r in json.loads(p.stdout)}
    assert rows["raspi4"]["kind"] == "predict-only" and rows["raspi4"]["space"] == "fbnet"
    assert rows["tpuv2"]["license"] == "Apache-2.0" and rows["cpu-litert"]["kind"] == "measure"


def test_sweep_on_a_published_device_uses_its_predictor_and_times_nothing(tmp_path):
    pytest.importorskip("optuna")
    p = mnas("sweep", "--profile", "a100", "--space", "anb", "--trials", "40", "--no-progress",
             "--out", str(tmp_path / "s"), "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["latency"]["host"]["chosen"] == "published"
    assert "surrogate/data/predictors/a100/anb" in res["latency"]["predictor"].replace("\\", "/")
    assert not res.get("finalists"), "a published device is never timed on this host"
    assert all(0 < q["latency_ms"] < 5 for q in res["pareto"])  # ms per image on an A100
    bad = mnas("sweep", "--profile", "a100", "--space", "anb", "--latency", "measured",
               "--out", str(tmp_path / "m"))
    assert bad.returncode == 2 and "predict-only" in bad.stderr and "Traceback" not in bad.stderr


# -- no fit turns the sources over (issue P, item 2) ------------------------------------
def _toy_devices(seed: int, n_sources: int = 3):
    """A true target device and sources that rank like it, on the FBNet space."""
    from space.spaces import get_space

    sp = get_space("fbnet")
    rng = np.random.default_rng(seed)
    n = sp.onehot(sp.sample_indices(rng, 1)).shape[1]
    a = rng.uniform(0.5, 1.5, n)

    def device(c):
        return lambda X: np.exp(0.03 * (sp.onehot(X) @ c))

    srcs = {f"s{j}": device(a + rng.uniform(0, 0.3, n)) for j in range(n_sources)}
    return sp, rng, device(a), srcs


def test_an_anticorrelated_draw_turns_no_source_over():
    from scipy.stats import spearmanr

    sp, rng, truth, srcs = _toy_devices(0)
    pool = sp.sample_indices(rng, 500)
    pick, rest = pool[:10], pool[10:]
    # ten noisy timings that happen to run against the truth and every source
    y = 50.0 / truth(pick) * np.exp(rng.normal(0, 0.01, 10))
    # the unconstrained ridge (the former fit) on the standardised log sources: all < 0
    Z = np.log(np.column_stack([s(pick) for s in srcs.values()]))
    Z = (Z - Z.mean(axis=0)) / Z.std(axis=0)
    t = np.log(y) - np.log(y).mean()
    for beta in (1.0, 10.0, 100.0):
        assert (np.linalg.solve(Z.T @ Z + beta * np.eye(3), Z.T @ t) < 0).all()
    for kw in ({}, {"min_residual": 11}):  # K = 10: with and without residual candidates
        est = MultiSourceTransfer("fbnet", sources=srcs, **kw).fit(pick, y)
        assert (est.weights_ >= 0).all() and all(v >= 0 for v in est.summary()["weights"].values())
        assert est.choice_ == "none"  # nothing supports a source, and none is inverted
        rho = spearmanr(est.predict(rest), truth(rest))[0]
        assert rho >= 0.5, rho  # ties follow the sources, which rank like the truth
        assert np.all(np.isfinite(list(est.candidates_.values())))


def test_constrained_loo_is_exact_refitting():
    # one source, no residual, log mode: the only candidate's LOO error equals K refits,
    # on a draw where the bound is active in some folds and not in others
    sp, rng, truth, srcs = _toy_devices(1, n_sources=1)
    X = sp.sample_indices(rng, 12)
    y = truth(X) ** 0.15 * np.exp(rng.normal(0, 0.02, 12))
    kw = dict(sources=srcs, modes=("log",), alphas=(), one_se=False)
    est = MultiSourceTransfer("fbnet", **kw).fit(X, y)
    errs, flat = [], 0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        fold = MultiSourceTransfer("fbnet", **kw).fit(X[keep], y[keep])
        flat += fold.choice_ == "none"
        errs.append(abs(np.log(fold.predict(X[i:i + 1])[0] / y[i])))
    assert 0 < flat < len(y), flat
    np.testing.assert_allclose(est.candidates_["log:s0"], np.mean(errs), rtol=1e-4)
    assert est.loo_error_ == est.candidates_["log:s0"]


def test_fold_rule_and_exact_loo_with_several_sources_and_a_residual():
    # every fold of the all-sources fit obeys the rule (mixed signs only along the
    # sources' consensus, else NNLS): the vectorised LOO equals K explicit refits
    from scipy.optimize import lsq_linear

    from space.spaces import get_space
    from surrogate.predict.multisource import _qp, _systems, space_features

    feats, mean, scale = space_features("fbnet", ("encoding", "counts"))
    sp = get_space("fbnet")
    checked = set()
    for seed in range(4):
        rng = np.random.default_rng(seed)
        X = sp.sample_indices(rng, 9)
        F = (feats.transform(X) - mean) / scale
        F -= F.mean(axis=0)
        k, m, alpha, beta = len(X), 3, 3.0, 1.0
        A = rng.normal(size=(k, m))
        A = (A - A.mean(axis=0)) / A.std(axis=0)
        t = rng.normal(size=k) - (seed % 3) * 0.5 * A[:, 0] + 0.3 * A[:, 1]
        B = np.column_stack([np.ones(k), A])
        lam, V = np.linalg.eigh(F @ F.T)
        Q = (V / (1 + np.maximum(lam, 0) / alpha)) @ V.T
        _, _, G, R, QB, Qt, qd = _systems(Q, B, t)
        va = (A.T @ A).sum(axis=1)
        e = (Qt - (QB * _qp(G, R, beta, va[None] - A * (A.sum(1) * k / (k - 1))[:, None])).sum(1)) / qd
        nf = F.shape[1]
        for i in range(k):
            S = np.arange(k) != i
            M = np.vstack([np.column_stack([np.ones(k - 1), A[S], F[S]]),
                           np.column_stack([np.zeros((m + nf, 1)),
                                            np.diag([np.sqrt(beta)] * m + [np.sqrt(alpha)] * nf)])])
            ta = np.concatenate([t[S], np.zeros(m + nf)])
            sol = np.linalg.lstsq(M, ta, rcond=None)[0]
            AS = A[S] - A[S].mean(axis=0)
            against = sol[1:1 + m] @ (AS.T @ AS).sum(axis=1) <= 0 or not (sol[1:1 + m] > 0).any()
            checked.add(bool(against))
            if against:
                lb = np.full(1 + m + nf, -np.inf)
                lb[1:1 + m] = 0
                sol = lsq_linear(M, ta, bounds=(lb, np.inf), tol=1e-12, max_iter=5000).x
                assert (sol[1:1 + m] >= 0).all()
            held = sol[0] + A[i] @ sol[1:1 + m] + F[i] @ sol[1 + m:]
            assert abs(e[i] - (t[i] - held)) < 1e-7, (seed, i)
    assert checked == {True, False}  # both branches ran
