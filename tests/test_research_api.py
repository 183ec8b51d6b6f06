"""Research pieces in the package: selection, the additive baseline, K-shot curves, frames."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402

from space import get_space  # noqa: E402
from surrogate.predict.baselines import Additive  # noqa: E402
from surrogate.predict.estimators import FlopsLinear, LatencyModel  # noqa: E402
from surrogate.predict.fewshot import Precomputed, curve_summary, kshot_curve  # noqa: E402
from surrogate.predict.selection import (ValidationSelector, candidates, cv_mape,  # noqa: E402
                                         select_and_fit, validation_split)
from surrogate.tables import Table, TableError, read_table, tables_dir  # noqa: E402


def _random_idx(space: str, n: int, seed: int = 0) -> np.ndarray:
    sp = get_space(space)
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, c, size=n) for c in sp.cardinalities], axis=1)


class _Mean:
    """A deliberately bad candidate: predicts the training mean."""

    def fit(self, X, y):
        self.m_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.m_)


# -- additive baseline -------------------------------------------------------------------
def test_additive_recovers_per_layer_op_costs():
    sp = get_space("fbnet")
    X = _random_idx("fbnet", 400)
    cost = np.random.default_rng(1).uniform(0.1, 2.0, sp.onehot_width)
    y = 5.0 + sp.onehot(X).astype(np.float64) @ cost
    m = Additive("fbnet")
    with pytest.raises(NotFittedError):
        m.predict(X)
    assert m.fit(X[:300], y[:300]) is m
    np.testing.assert_allclose(m.predict(X[300:]), y[300:], rtol=1e-8)
    assert clone(m).get_params() == {"space": "fbnet"} and not hasattr(clone(m), "coef_")
    with pytest.raises(ValueError, match="latencies"):
        Additive().fit(X[:3], [1.0, -2.0, 3.0])


# -- selection -----------------------------------------------------------------------------
def test_select_and_fit_prefers_the_better_candidate():
    X = _random_idx("anb", 150)
    y = 1.0 + 0.05 * X.sum(axis=1)  # additive in the choices: a linear model fits it
    cands = {"mean": lambda s: _Mean(),
             "flops": lambda s: LatencyModel("anb", model="ridge", parts=("encoding",))}
    sel = select_and_fit(cands, X, y, seed=3)
    assert sel.chosen == "flops" and set(sel.fitted) == {"mean", "flops"}
    assert sel.validation["flops"]["mape"] < sel.validation["mean"]["mape"]
    frame = sel.validation_frame()
    assert list(frame["model"]) == ["flops", "mean"] and frame["chosen"].tolist() == [True, False]
    only = select_and_fit(cands, X, y, seed=3, refit="chosen")
    assert set(only.fitted) == {"flops"}
    np.testing.assert_allclose(only.best.predict(X), sel.best.predict(X))
    with pytest.raises(ValueError, match="refit"):
        select_and_fit(cands, X, y, refit="some")
    with pytest.raises(ValueError, match="cands"):
        select_and_fit({}, X, y)
    assert cv_mape(lambda: cands["flops"](0), X, y) < cv_mape(lambda: _Mean(), X, y)
    with pytest.raises(ValueError, match="folds"):
        cv_mape(lambda: _Mean(), X[:3], y[:3], folds=5)
    sel_est = ValidationSelector("anb", candidates=cands)
    assert sel_est.fit(X, y) is sel_est and sel_est.chosen_ == "flops"
    assert "candidates" in clone(sel_est).get_params()


def test_selection_converts_architectures_once_with_the_same_result():
    sp = get_space("anb")
    X = _random_idx("anb", 40, seed=5)
    archs = [str(sp.to_arch(i)) for i in X]  # strings: converted in every fit/predict unless space=
    y = 1.0 + 0.05 * X.sum(axis=1)

    def make():
        return LatencyModel("anb", model="ridge", parts=("encoding", "counts"))

    assert cv_mape(make, archs, y, space="anb") == cv_mape(make, archs, y)
    cands = {"ridge": lambda s: make(), "flops": lambda s: FlopsLinear("anb")}
    fast, slow = (select_and_fit(cands, archs, y, seed=1, **kw) for kw in ({"space": "anb"}, {}))
    assert fast.chosen == slow.chosen and fast.validation == slow.validation
    np.testing.assert_array_equal(fast.best.predict(archs), slow.best.predict(archs))


def test_validation_split_and_candidates():
    tr, va = validation_split(100, val_share=0.2, seed=0)
    assert len(va) == 20 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    with pytest.raises(ValueError, match="val_share"):
        validation_split(10, val_share=1.5)
    c = candidates("fbnet", quick=True, with_mlp=False)
    assert set(c) == {"ridge", "xgb", "xgb-l1", "huber-linear", "additive"}
    assert c["xgb"](0).model_params == {"n_estimators": 40}


# -- K-shot curves ------------------------------------------------------------------------
def test_kshot_curve_transfer_beats_scratch_and_scores_remaining_rows():
    X = _random_idx("anb", 300, seed=2)
    base = 1.0 + 0.05 * X.sum(axis=1)
    y = 2.5 * base  # the target is the source, scaled
    src = Precomputed(X, base)
    curve = kshot_curve(X, y, space="anb", sources={"dev": src}, ks=(5, 20), draws=3, seed=1)
    assert len(curve) == 2 * 3 * 3  # (K) x (draws) x (from dev, scratch ridge, scratch flops)
    assert set(curve["method"]) == {"from dev", "scratch ridge", "scratch flops-linear"}
    assert (curve["n"] == 300 - curve["k"]).all()  # scored on every row not drawn
    s = curve_summary(curve)
    assert (s["draws"] == 3).all() and len(s) == 6
    best = s.loc[s.groupby("k")["mape"].idxmin(), "method"]
    assert set(best) == {"from dev"}
    assert s.loc[s["method"] == "from dev", "mape"].max() < 1e-6
    fixed = kshot_curve(X, y, space="anb", sources={"dev": src}, ks=(5,), draws=1, pool=np.arange(100),
                        test=np.arange(200, 300), scratch={})
    assert fixed["n"].tolist() == [100] and fixed["method"].tolist() == ["from dev"]
    with pytest.raises(ValueError, match="ks"):
        kshot_curve(X, y, space="anb", sources={"dev": src}, ks=(1,))
    with pytest.raises(ValueError, match="nothing to score"):
        kshot_curve(X, y, space="anb", scratch={})
    with pytest.raises(KeyError, match="no prediction"):
        Precomputed(X[:5], base[:5])(X[5:6])


# -- frames --------------------------------------------------------------------------------
def test_read_table_is_typed_and_matches_rows(tmp_path):
    path = tables_dir() / "cpu-litert" / "anb_models.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not shipped")
    df = read_table(path)
    rows = Table.models(path).read()
    assert len(df) == len(rows) and list(df.columns) == Table.models(path).columns
    assert df["params"].dtype == "int64" and df["median_ms"].dtype == "float64"
    assert df["remeasured"].dtype == bool and df["clock"].dtype == "category"
    assert set(df["clock"].cat.categories) == {"cpu", "wall"}
    np.testing.assert_allclose(df["median_ms"], [r["median_ms"] for r in rows])
    with pytest.raises(TableError, match="expected a file named"):
        read_table(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="anb_models.csv"):
        read_table(tmp_path / "anb_models.csv")


def test_timings_and_evaluation_frames():
    from surrogate.predict.workflow import (evaluate_on_tables, evaluation_frame, is_test,
                                            load_timings, timings_frame)

    if not (tables_dir() / "cpu-litert" / "anb_models.csv").is_file():
        pytest.skip("no shipped cpu-litert/anb table")
    archs, y = load_timings("cpu-litert", "anb")
    df = timings_frame("cpu-litert", "anb")
    assert df["arch"].tolist() == archs and np.allclose(df["latency_ms"], y)
    assert df["test"].tolist() == [is_test(a) for a in archs] and 0 < df["test"].mean() < 0.5
    yn = timings_frame("cpu-litert", "anb", normalise=True)["latency_ms"]
    np.testing.assert_allclose(yn, load_timings("cpu-litert", "anb", normalise=True)[1])
    res = evaluate_on_tables("cpu-litert", "anb", FlopsLinear("anb").fit(archs, y))
    ev = evaluation_frame(res)
    assert ev["role"].tolist()[0] == "model" and "flops_linear" in set(ev["predictor"])
    assert ev.loc[0, "mape"] == pytest.approx(res["mape"]) and (ev["n"] == res["n"]).all()


def test_sweep_result_frames(tmp_path):
    from search.sweep import SweepResult

    (tmp_path / "trials.csv").write_text("trial,arch,accuracy,latency_ms,reward,worker\n"
                                         "0,a,0.5,2.0,0.4,\n1,b,0.7,3.0,0.6,w1\n")
    pareto = [{"arch": "b", "accuracy": 0.7, "latency_ms": 3.0, "reward": 0.6, "trial": 1},
              {"arch": "a", "accuracy": 0.5, "latency_ms": 2.0, "reward": 0.4, "trial": 0}]
    res = SweepResult(config={}, trials=2, evaluated_here=2, pareto=pareto, hypervolume=1.0,
                      hypervolume_reference={}, latency_target_ms=2.5, wall_s=1.0, trials_per_s=2.0,
                      files={"trials": str(tmp_path / "trials.csv")})
    t = res.trials_frame()
    assert t["trial"].dtype == "int64" and t["latency_ms"].dtype == "float64"
    assert t["worker"].tolist() == ["", "w1"]
    p = res.pareto_frame()
    assert p["arch"].tolist() == ["a", "b"] and p["trial"].dtype == "int64"
    res.files["trials"] = str(tmp_path / "gone.csv")
    with pytest.raises(FileNotFoundError, match="gone.csv"):
        res.trials_frame()


# -- the README's API example -----------------------------------------------------------------
def _readme_api_block() -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert text.count("\n## API\n") == 1, "README.md needs exactly one '## API' section"
    section = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    assert "```python\n" in section, "the README's API section has no python code block"
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_api_example_runs(capsys):
    """The README's API block runs as written and prints what its comments say."""
    if not (tables_dir() / "cpu-litert" / "anb_models.csv").is_file():
        pytest.skip("no shipped cpu-litert/anb tables")
    code = _readme_api_block()
    assert 10 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 20
    exec(compile(code, "README.md:API", "exec"), {"__name__": "readme_api"})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3, out
    assert " ms (table): " in out[0] and float(out[0].split(" ms")[0]) > 0  # priced from operators
    metrics = eval(out[1], {})  # a latency_metrics dict
    assert metrics["n"] > 0 and 0 < metrics["mape"] < 0.5 and metrics["kendall_tau"] > 0.5
    assert out[2].startswith("OpSum(") and "missing=0" in out[2] and "measured=0" not in out[2]


# -- a predictor's table path, checkout or installed --------------------------------------------
def test_table_path_resolves_against_the_shipped_tables(tmp_path, monkeypatch):
    import shutil

    import surrogate.paths as sp
    import surrogate.tables as st
    from search.latency import PredictedLatency, _table_path

    rel = "data/latency_tables/cpu-litert/anb_ops.csv"
    if not (st.DEFAULT_TABLES_DIR / "cpu-litert" / "anb_ops.csv").is_file():
        pytest.skip("no shipped cpu-litert/anb operator table")
    assert _table_path(rel) == str(st.DEFAULT_TABLES_DIR / "cpu-litert" / "anb_ops.csv")
    desc = PredictedLatency("cpu-litert", "anb").describe()
    assert desc["table_source"] == str(st.DEFAULT_TABLES_DIR / "cpu-litert" / "anb_ops.csv")
    # an installed package's tables live elsewhere: the path follows DEFAULT_TABLES_DIR
    installed = tmp_path / "site" / "surrogate" / "data" / "latency_tables"
    (installed / "cpu-litert").mkdir(parents=True)
    shutil.copy(st.DEFAULT_TABLES_DIR / "cpu-litert" / "anb_ops.csv", installed / "cpu-litert")
    monkeypatch.setattr(sp, "DEFAULT_TABLES_DIR", installed)
    assert _table_path(rel) == str(installed / "cpu-litert" / "anb_ops.csv")
    assert _table_path("data/latency_tables/cpu-litert/fbnet_ops.csv") is None  # not copied there
    absolute = tmp_path / "mine_ops.csv"
    assert _table_path(str(absolute)) is None
    absolute.write_text("x")
    assert _table_path(str(absolute)) == str(absolute)
    assert _table_path(None) is None and _table_path("") is None
