"""Sweeps through Optuna (samplers, controllers, multi-worker storage, resume) and PPO."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from space import get_space  # noqa: E402
from search.controllers import EvolutionController, PPOController, RandomController  # noqa: E402
from search.sweep import SweepConfig, open_storage, run_sweep  # noqa: E402
from surrogate.tables import Table, tables_dir  # noqa: E402
from surrogate.predict.estimators import TableSum  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402
from surrogate.predict.persist import save_predictor  # noqa: E402

ANB_TABLE = tables_dir() / "cpu-litert" / "anb_ops.csv"
pytestmark = pytest.mark.skipif(not ANB_TABLE.is_file(), reason=f"{ANB_TABLE} is not shipped")


@pytest.fixture(scope="module")
def predictor_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pred") / "anb"
    save_predictor(TableSum("anb", OpTable.from_csv(ANB_TABLE)).fit(), d, profile="cpu-litert")
    return d


@pytest.fixture(scope="module")
def objectives(predictor_dir):
    from search.accuracy import get_accuracy
    from search.latency import PredictedLatency

    return get_accuracy("anb"), PredictedLatency("cpu-litert", "anb", predictor_dir)


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_sweep_samplers_write_front(sampler, objectives, tmp_path):
    acc, lat = objectives
    cfg = SweepConfig(sampler=sampler, trials=40, batch=8, out_dir=str(tmp_path), seed=1)
    res = run_sweep(cfg, acc, lat, progress=False)
    assert res.trials == 40 and res.hypervolume > 0
    lats = [p["latency_ms"] for p in res.pareto]
    accs = [p["accuracy"] for p in res.pareto]
    assert lats == sorted(lats) and accs == sorted(accs)  # a front: faster is less accurate
    rows = (tmp_path / "pareto.csv").read_text().splitlines()
    assert len(rows) == len(res.pareto) + 1 and rows[0].startswith("trial,arch")
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    # reference networks of the space were enqueued as seeds
    trials = (tmp_path / "trials.csv").read_text()
    assert "r1_k3_s11_e1_i32_o16_se0.25,r2_k3_s22_e6_i16_o24_se0.25" in trials


@pytest.mark.parametrize("ctrl", [RandomController, EvolutionController, PPOController])
def test_controllers_share_the_study(ctrl, objectives, tmp_path):
    acc, lat = objectives
    sp = get_space("anb")
    c = ctrl(sp, seed=0) if ctrl is not EvolutionController else ctrl(sp, seed=0, population=10, sample=3)
    cfg = SweepConfig(controller=c.name, trials=48, batch=8, out_dir=str(tmp_path),
                      storage=f"journal:{tmp_path / 'j.log'}", seed_reference=False)
    res = run_sweep(cfg, acc, lat, progress=False, controller=c)
    assert res.trials == 48
    study = optuna.load_study(study_name=cfg.name, storage=open_storage(cfg.storage))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 48
    assert all("arch" in t.user_attrs for t in study.trials)


def test_ppo_learns_to_prefer_the_better_token():
    sp = get_space("nasbench-macro")
    c = PPOController(sp, seed=0, batch=16, lr=3e-3)
    before = np.mean([p[2] for p in c.probabilities()])
    for _ in range(40):
        idx = c.propose(16)
        reward = np.array([np.mean(np.array(i) == 2) for i in idx])
        c.observe(idx, reward, np.ones(16), reward)
    after = np.mean([p[2] for p in c.probabilities()])
    assert after > before + 0.3, (before, after)


def test_ppo_checkpoint_resume_is_exact(tmp_path):
    sp = get_space("nasbench-macro")
    a = PPOController(sp, seed=3, batch=8)
    for _ in range(3):
        idx = a.propose(8)
        a.observe(idx, np.ones(8), np.ones(8), np.linspace(0, 1, 8))
    a.save(tmp_path / "c.pt")
    b = PPOController(sp, seed=99, batch=8)
    assert b.load(tmp_path / "c.pt")
    assert a.propose(8) == b.propose(8)
    with pytest.raises(ValueError, match="another space"):
        PPOController(get_space("anb")).load(tmp_path / "c.pt")
    # another controller's checkpoint: a clear error, not a KeyError
    from search.controllers import save_checkpoint

    save_checkpoint({"controller": "gradient", "cards": a.cards}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match="belongs to the 'gradient' controller, not 'ppo'"):
        PPOController(sp).load(tmp_path / "g.pt")


def _sweep_cmd(tmp_path, predictor_dir, storage, trials, extra=()):
    return [sys.executable, "-m", "search.cli", "sweep", "--trials", str(trials), "--batch", "4",
            "--storage", storage, "--study-name", "s", "--remeasure", "0", "--no-progress",
            "--predictor", str(predictor_dir), "--out", str(tmp_path / "out"), "--json", *extra]


def test_three_workers_one_journal_no_lost_or_duplicated_trials(tmp_path, predictor_dir):
    storage = f"journal:{tmp_path / 'sweep.log'}"
    cmd = _sweep_cmd(tmp_path, predictor_dir, storage, 90, ["--no-seed-reference"])
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for s in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    evaluated = sum(json.loads(o[0])["evaluated_here"] for o in outs)
    study = optuna.load_study(study_name="s", storage=open_storage(storage))
    states = [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert optuna.trial.TrialState.RUNNING not in states
    assert len(complete) == evaluated  # every evaluation recorded exactly once
    assert len(complete) == 90  # exactly --trials, whoever finishes first
    assert len({t.number for t in study.trials}) == len(study.trials)
    workers = {t.user_attrs["worker"] for t in complete}
    # the study was shared; on a loaded host a worker that starts late may find it full
    # (it then exits 0 having evaluated nothing), so not every worker need contribute
    assert 2 <= len(workers) <= 3


def test_sweep_killed_and_resumed(tmp_path, predictor_dir):
    db = tmp_path / "sweep.db"
    storage = f"sqlite:///{db}"
    cmd = _sweep_cmd(tmp_path, predictor_dir, storage, 4000, ["--no-seed-reference"])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and n < 40:
        time.sleep(0.5)
        if db.exists():
            try:
                n = len(optuna.load_study(study_name="s", storage=storage).get_trials(
                    states=(optuna.trial.TrialState.COMPLETE,)))
            except Exception:
                n = 0
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert n >= 40
    target = n + 30
    done = subprocess.run(_sweep_cmd(tmp_path, predictor_dir, storage, target, ["--no-seed-reference"]),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-800:]
    study = optuna.load_study(study_name="s", storage=storage)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == target
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def test_sweep_bad_input_one_line(predictor_dir):
    for argv, needle in [
        (["sweep", "--sampler", "cmaes"], "cmaes"),
        (["sweep", "--trials", "0"], "positive integer"),
        (["sweep", "--storage", "not-a-url", "--predictor", str(predictor_dir)], "not a URL"),
        (["sweep", "--accuracy", "nope"], "nope"),
        (["sweep", "--space", "fbnet", "--profile", "cpu-litert"], "fbnet"),
    ]:
        p = subprocess.run([sys.executable, "-m", "search.cli", *argv, "--remeasure", "0"],
                           capture_output=True, text=True)
        assert p.returncode == 2, (argv, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, (argv, p.stderr)


def test_sweep_cli_with_measured_latency(macro_json, tmp_path):
    """`--latency measured` looks every network up in the shipped end-to-end table."""
    from search.latency import MeasuredLatency

    table = tables_dir() / "cpu-onnxruntime" / "nasbench-macro_models.csv"
    if not table.is_file():
        pytest.skip(f"{table} is not shipped")
    p = subprocess.run([sys.executable, "-m", "search.cli", "sweep", "--space", "nasbench-macro",
                        "--profile", "cpu-onnxruntime", "--accuracy", "macro", "--latency", "measured",
                        "--data", str(macro_json.parents[1]), "--trials", "24", "--remeasure", "0",
                        "--no-progress", "--json", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-800:]
    res = json.loads(p.stdout)
    measured = MeasuredLatency("cpu-onnxruntime", "nasbench-macro").table
    assert res["trials"] == 24 and res["pareto"]
    for f in res["pareto"]:
        assert f["latency_ms"] == pytest.approx(measured[f["arch"]])
    bad = subprocess.run([sys.executable, "-m", "search.cli", "search", "--controller", "gradient",
                          "--space", "nasbench-macro", "--profile", "cpu-onnxruntime", "--accuracy", "macro",
                          "--latency", "measured", "--data", str(macro_json.parents[1]), "--remeasure", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--latency predicted" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_measured_latency_refuses_a_partial_table_upfront():
    """A table of 300 sampled anb networks cannot drive a search: say so before it starts."""
    from search.latency import MeasuredLatency

    if not (tables_dir() / "cpu-litert" / "anb_models.csv").is_file():
        pytest.skip("the cpu-litert anb table is not shipped")
    with pytest.raises(ValueError, match=r"needs every network of 'anb' timed.*lacks \d+ of 64"):
        MeasuredLatency("cpu-litert", "anb")


def test_remeasure_finalists_times_the_front_and_checks_the_machine(macro_json, tmp_path):
    """`--remeasure K` times the K front networks nearest the target on the profile's device,
    flags >10% disagreement and relates the reference operator to the shipped tables'."""
    pytest.importorskip("onnxruntime")
    from search.accuracy import get_accuracy
    from search.latency import MeasuredLatency
    from search.sweep import remeasure_finalists
    from surrogate.measure.finalists import reference_baseline_ms

    if not (tables_dir() / "cpu-onnxruntime" / "nasbench-macro_models.csv").is_file():
        pytest.skip("the cpu-onnxruntime macro table is not shipped")
    acc = get_accuracy("macro", data=str(macro_json.parents[1]))
    lat = MeasuredLatency("cpu-onnxruntime", "nasbench-macro")
    cfg = SweepConfig(space="nasbench-macro", profile="cpu-onnxruntime", accuracy="macro", trials=16,
                      batch=8, out_dir=str(tmp_path), seed_reference=False)
    res = run_sweep(cfg, acc, lat, progress=False)
    rows = remeasure_finalists(res, 2, progress=False, cache_dir=str(tmp_path / "cache"))
    assert len(rows) == min(2, len(res.pareto)) and res.finalists == rows
    base = reference_baseline_ms("cpu-onnxruntime", "nasbench-macro")
    assert base and base > 0
    for r in rows:
        assert r["measured_ms"] > 0
        assert r["error"] == pytest.approx(r["latency_ms"] / r["measured_ms"] - 1)
        assert r["flag"] == (abs(r["error"]) > 0.10)
        assert r["reference_ratio"] > 0
        want = r["measured_ms"] if r["reference_paired"] else r["measured_ms"] / r["reference_ratio"]
        assert r["measured_normalised_ms"] == pytest.approx(want)
    assert (tmp_path / "cpu-onnxruntime" / "finalists_models.csv").is_file()
    assert reference_baseline_ms("cpu-onnxruntime", "no-such-space") is None


def test_paired_finalists_are_on_the_predictor_tables_scale(macro_json, tmp_path):
    """Finalists of a reference-paired (min+ref) predictor are timed paired, related to
    the reference of *that predictor's* tables, and not normalised a second time."""
    pytest.importorskip("ai_edge_litert")
    from search.accuracy import get_accuracy
    from search.latency import PredictedLatency
    from search.sweep import remeasure_finalists
    from surrogate.measure.host import table_reference_ms
    from surrogate.tables import table_timing

    lat = PredictedLatency("cpu-litert", "nasbench-macro")
    source = lat.describe()["table_source"]
    if not source or "+ref" not in (table_timing(source).get("estimator") or ""):
        pytest.skip("the shipped cpu-litert macro predictor is not reference-paired")
    acc = get_accuracy("macro", data=str(macro_json.parents[1]))
    cfg = SweepConfig(space="nasbench-macro", profile="cpu-litert", accuracy="macro", trials=16,
                      batch=8, out_dir=str(tmp_path), seed_reference=False)
    res = run_sweep(cfg, acc, lat, progress=False)
    rows = remeasure_finalists(res, 1, progress=False, cache_dir=str(tmp_path / "cache"))
    (r,) = rows
    timed = Table.models(tmp_path / "cpu-litert" / "finalists_models.csv").read()
    assert {t["estimator"] for t in timed} == {table_timing(source)["estimator"]}
    assert r["reference_paired"] is True and r["measured_normalised_ms"] == r["measured_ms"]
    assert r["reference_ratio"] == pytest.approx(timed[0]["ref_ms"] / table_reference_ms(source))


# -- Optuna 5 idioms: metric names, the hard budget as a constraint, trial metadata ------
def _study(cfg, objectives):
    run_sweep(cfg, *objectives, progress=False)
    return optuna.load_study(study_name=cfg.name, storage=open_storage(cfg.storage))


def test_hard_budget_is_a_constraint_and_trials_carry_metadata(objectives, tmp_path):
    from search.sweep import default_target

    target = 0.9 * default_target(objectives[1], objectives[1].space)
    cfg = SweepConfig(trials=24, batch=8, reward="hard", latency_target_ms=target,
                      storage=f"journal:{tmp_path / 's.log'}", out_dir=str(tmp_path / "o"))
    study = _study(cfg, objectives)
    assert study.metric_names == ["accuracy", "latency_ms"]
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 24
    feasible = 0
    for t in trials:
        assert t.constraints["latency_ms"] == pytest.approx(t.values[1] - target)
        feasible += t.values[1] <= target
        assert t.user_attrs["device"] == "cpu-litert" and t.user_attrs["runtime"] == "litert"
        assert t.user_attrs["latency_kind"] == "predicted"
        assert t.user_attrs["versions"]["optuna"] == optuna.__version__
        assert t.user_attrs["worker"]
    assert 0 < feasible < len(trials)  # the budget splits the trials


def test_soft_reward_sets_no_constraint(objectives, tmp_path):
    cfg = SweepConfig(trials=8, batch=8, latency_target_ms=5.0, storage=f"journal:{tmp_path / 's.log'}",
                      out_dir=str(tmp_path / "o"), seed_reference=False)
    study = _study(cfg, objectives)
    assert all(not t.constraints for t in study.get_trials())
