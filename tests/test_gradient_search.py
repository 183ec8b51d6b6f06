"""The relaxed gradient search (search.controllers.gradient): differentiable surrogates, the
relaxed objective, the controller, checkpoints and the ``mnas search`` path."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from space import get_space  # noqa: E402
from search.controllers import GradientController  # noqa: E402
from search.controllers.relaxation import grouped_softmax  # noqa: E402
from surrogate.predict.differentiable import RelaxedFeatures  # noqa: E402
from surrogate.predict.distill import DistilledMLP, distill_accuracy  # noqa: E402
from surrogate.predict.relaxed import relaxed_latency  # noqa: E402
from surrogate.predict.workflow import default_predictor_dir  # noqa: E402

SHIPPED = default_predictor_dir("cpu-litert", "anb")
needs_shipped = pytest.mark.skipif(not (SHIPPED / "meta.json").is_file(),
                                   reason=f"no shipped predictor at {SHIPPED}")


@pytest.fixture(scope="module")
def shipped_latency():
    from search.latency import PredictedLatency

    torch.set_num_threads(1)
    return PredictedLatency("cpu-litert", "anb")


class _Toy(torch.nn.Module):
    """``base + x @ per_column`` (a linear function of the relaxed encoding)."""

    def __init__(self, base: float, per_column: np.ndarray):
        super().__init__()
        self.base = base
        self.register_buffer("w", torch.as_tensor(per_column, dtype=torch.float64))

    def forward(self, x):
        return self.base + x.to(torch.float64) @ self.w


def _toy_controller(seed=0, **kw):
    """nasbench-macro (8 x 3 choices): decisions 0-3 differ only in latency (choice 2
    fastest), decisions 4-7 only in accuracy (choice 1 best)."""
    sp = get_space("nasbench-macro")
    lat_cost = np.zeros(sp.onehot_width)
    acc_gain = np.zeros(sp.onehot_width)
    for j in range(4):
        lat_cost[3 * j: 3 * j + 3] = [3.0, 2.0, 0.2]
    for j in range(4, 8):
        acc_gain[3 * j: 3 * j + 3] = [0.0, 0.05, 0.0]
    kw = {"chains": 1, "steps": 4, "samples": 8, "lr": 0.1, "horizon": 64, "target_ms": 5.0, **kw}
    return sp, GradientController(sp, seed=seed, accuracy_model=_Toy(0.4, acc_gain),
                                  latency_model=_Toy(1.0, lat_cost), **kw)


# -- differentiable surrogates ------------------------------------------------------------------
@needs_shipped
def test_relaxed_latency_equals_a_residual_ridge_predictor_on_onehots():
    from surrogate.predict.differentiable import ExpectedTableLatency
    from surrogate.predict.estimators import ResidualLatency
    from surrogate.predict.optable import OpTable
    from surrogate.predict.workflow import load_timings

    sp = get_space("anb")
    archs, y = load_timings("cpu-litert", "anb")
    pred = ResidualLatency("anb", OpTable.shipped("cpu-litert", "anb"), model="ridge").fit(archs, y)
    mod, info = relaxed_latency(pred)
    assert info["kind"] == "expected-features"
    idx = sp.sample_indices(np.random.default_rng(0), 64)
    with torch.no_grad():
        got = mod(torch.as_tensor(sp.onehot(idx))).numpy()
    np.testing.assert_allclose(got, pred.predict(idx), rtol=1e-9)
    # the expected table sum of soft distributions agrees with ExpectedTableLatency
    feats = RelaxedFeatures(pred.features_)
    probs = grouped_softmax(torch.randn(5, sp.onehot_width, dtype=torch.float64),
                            [d.n for d in sp.decisions])
    etl = ExpectedTableLatency(pred.features_.compiled_, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(feats(probs)[1].numpy(), etl(probs).numpy(), rtol=1e-9)
        X = pred.features_.transform(idx[:8])
        np.testing.assert_allclose(feats(torch.as_tensor(sp.onehot(idx[:8])))[0].numpy(), X,
                                   rtol=1e-9, atol=1e-9)


@needs_shipped
def test_relaxed_latency_of_other_predictor_kinds(shipped_latency):
    from surrogate.predict.estimators import FlopsLinear, LatencyModel, TableSum

    sp = get_space("anb")
    table = shipped_latency.predictor.features_.table_
    idx = sp.sample_indices(np.random.default_rng(1), 24)
    y = shipped_latency.batch(idx)
    for est, kind in [
        (TableSum("anb", table, calibrate=True).fit(idx, y), "expected-table-sum"),
        (FlopsLinear("anb").fit(idx, y), "expected-madds-linear"),
        (LatencyModel("anb", table, model="mlp", parts=("encoding", "counts", "table"),
                      model_params={"hidden": (8,), "epochs": 2}).fit(idx, y), "expected-features"),
        (LatencyModel("anb", model="mlp", parts=("encoding",),
                      model_params={"hidden": (8,), "epochs": 2}).fit(idx, y), "relaxed-mlp"),
    ]:
        mod, info = relaxed_latency(est)
        assert info["kind"] == kind
        with torch.no_grad():
            got = mod(torch.as_tensor(sp.onehot(idx))).double().numpy()
        np.testing.assert_allclose(got, est.predict(idx), rtol=1e-5, err_msg=kind)


@needs_shipped
def test_relaxed_objective_has_finite_gradients(shipped_latency):
    sp = get_space("anb")
    for hard in (True, False):
        c = GradientController(sp, seed=0, latency=shipped_latency, accuracy_model=DistilledMLP(
            sp.onehot_width, (16,), y_mean=0.6, y_scale=0.03), chains=3, samples=4, hard=hard,
            target_ms=20.0)
        loss = c.loss()
        loss.backward()
        g = c.logits.grad
        assert torch.isfinite(loss) and g is not None and torch.isfinite(g).all()
        assert g.abs().sum() > 0


def test_distilled_accuracy_tracks_its_teacher_and_is_cached(tmp_path):
    class Teacher:  # an accuracy objective on nasbench-macro: a known additive function
        name, space, fingerprint = "toy", get_space("nasbench-macro"), "t1"

        def _evaluate(self, idx):
            return 0.5 + 0.01 * np.asarray(idx).sum(axis=1)

    cache = tmp_path / "acc.pt"
    m, info = distill_accuracy(Teacher(), cache=cache, n=800, heldout=200, epochs=8)
    assert info["kendall_tau"] > 0.8 and not info["from_cache"] and cache.is_file()
    m2, info2 = distill_accuracy(Teacher(), cache=cache)
    assert info2["from_cache"] and info2["kendall_tau"] == info["kendall_tau"]
    x = torch.rand(3, m.width)
    assert torch.equal(m(x), m2(x))


# -- the search ---------------------------------------------------------------------------------
def test_search_moves_mass_to_faster_and_more_accurate_choices():
    sp, c = _toy_controller()
    before = c.probabilities()[0].reshape(8, 3)
    props = c.propose(32)
    p = c.probabilities()[0].reshape(8, 3)
    assert np.allclose(before, 1 / 3)
    assert (p[:4, 2] > 0.8).all(), p  # the fastest choice where only latency differs
    assert (p[4:, 1] > 0.8).all(), p  # the most accurate choice where only accuracy differs
    assert len(set(props)) == len(props)  # evaluated networks are not proposed twice
    assert c.temperature() < 5.0 and len(c.history) == 32


def test_hard_reward_chains_and_checkpoint_resume_is_exact(tmp_path):
    sp, a = _toy_controller(seed=3, chains=3, reward="hard")
    a.propose(7)
    a.observe([(0,) * 8], [0.5], [1.0], [0.5])
    a.save(tmp_path / "c.pt")
    assert [ch["target_ms"] for ch in a.info["chains"]] == [2.5, 5.0, 10.0]
    _, b = _toy_controller(seed=99, chains=3, reward="hard")
    assert b.load(tmp_path / "c.pt")
    assert a.propose(9) == b.propose(9)
    assert torch.equal(a.logits, b.logits)
    _, other = _toy_controller(chains=2)
    with pytest.raises(ValueError, match="chains"):
        other.load(tmp_path / "c.pt")


def test_checkpoint_with_the_old_adam_moments_resumes(tmp_path):
    """Checkpoints from before torch.optim.Adam hold the moments as {"m", "v", "t"}."""
    _, a = _toy_controller(seed=3, chains=2)
    a.propose(4)
    a.save(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=False)
    adam = state["opt"]["state"][0]
    state["opt"] = {"m": [adam["exp_avg"]], "v": [adam["exp_avg_sq"]], "t": int(adam["step"])}
    torch.save(state, tmp_path / "old.pt")
    _, b = _toy_controller(seed=3, chains=2)
    assert b.load(tmp_path / "old.pt")
    got = b.opt.state_dict()["state"][0]
    assert got["step"] == adam["step"] and torch.equal(got["exp_avg_sq"], adam["exp_avg_sq"])
    assert torch.equal(got["exp_avg"], adam["exp_avg"])
    assert a.propose(6) == b.propose(6)


@pytest.mark.parametrize("kw, match", [
    ({"lr": 0.0}, "lr must be > 0"), ({"steps": 0}, "steps must be > 0"),
    ({"steps": 1.5}, "steps must be an integer"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": 1.0, "temperature_end": 2.0}, "temperature_end"),
    ({"chains": -1}, "chains"), ({"reward": "medium"}, "reward"), ({"target_ms": -3.0}, "target_ms"),
])
def test_controller_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        _toy_controller(**kw)


# -- the CLI path -------------------------------------------------------------------------------
def _cli(argv, capsys):
    from search.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@needs_shipped
def test_cli_gradient_search_shares_the_study_and_resumes(tmp_path, capsys, shipped_latency):
    from search.accuracy import get_accuracy
    from search.sweep import open_storage

    out = tmp_path / "run"
    # a small distilled model in the cache the CLI uses (the default one takes ~4 s of CPU)
    _, info = distill_accuracy(get_accuracy("anb"), cache=out / "accuracy_mlp.pt", n=1500,
                               heldout=300, epochs=4)
    storage = f"journal:{tmp_path / 'j.log'}"
    base = ["search", "--controller", "gradient", "--storage", storage, "--study-name", "g", "--latency-source", "shipped",
            "--no-seed-reference", "--remeasure", "0", "--no-progress", "--out", str(out),
            "--batch", "4", "--chains", "4", "--steps", "2", "--lr", "0.2", "--temperature", "3"]
    rc, text, err = _cli(base + ["--trials", "8", "--json"], capsys)
    assert rc == 0, err
    res = json.loads(text)
    assert res["trials"] == 8 and res["hypervolume"] > 0
    relaxed = res["accuracy"]["relaxed_search"]
    assert relaxed["accuracy_model"]["from_cache"] and relaxed["latency_model"]["kind"]
    assert len(relaxed["chains"]) == 4 and (out / "controller.pt").is_file()
    rc, text, err = _cli(base + ["--trials", "12"], capsys)  # resumes from the checkpoint
    assert rc == 0, err
    assert "distilled accuracy MLP: Kendall tau" in text
    study = optuna.load_study(study_name="g", storage=open_storage(storage))
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 12 and all("arch" in t.user_attrs for t in done)
    assert len({tuple(sorted(t.params.items())) for t in done}) == 12  # no network twice


@pytest.mark.parametrize("extra, needle", [
    (["--lr", "-1"], "lr must be > 0"),
    (["--steps", "0"], "positive integer"),
    (["--temperature", "abc"], "abc"),
    (["--temperature", "1", "--temperature-end", "2"], "temperature_end"),
])
def test_cli_bad_gradient_options(extra, needle, capsys, monkeypatch):
    # validation happens before any objective is loaded or distilled
    monkeypatch.setattr("search.accuracy.get_accuracy",
                        lambda *a, **k: pytest.fail("objective loaded before validation"))
    rc, _, err = _cli(["search", "--controller", "gradient", "--remeasure", "0", *extra], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_cli_gradient_options_need_the_gradient_controller(capsys, monkeypatch):
    monkeypatch.setattr("search.accuracy.get_accuracy",
                        lambda *a, **k: pytest.fail("objective loaded before validation"))
    rc, _, err = _cli(["search", "--controller", "ppo", "--steps", "3", "--remeasure", "0"], capsys)
    assert rc == 2 and "--steps applies to --controller gradient only" in err
