"""A study remembers what it is (issue N): workers with other objective settings are
refused, per-worker settings are not; sweep bad inputs are one line and create nothing;
a full study's dead-worker claims are failed before the workers leave."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import search  # noqa: E402
from search.storage import open_storage  # noqa: E402
from surrogate.predict.workflow import default_predictor_dir  # noqa: E402
from surrogate.tables import tables_dir  # noqa: E402

REPO = Path(search.__file__).resolve().parents[1]  # the checkout under test: subprocesses run it
ANB_TABLE = tables_dir() / "cpu-litert" / "anb_ops.csv"
SHIPPED = ANB_TABLE.is_file() and (default_predictor_dir("cpu-litert", "anb") / "meta.json").is_file()
pytestmark = pytest.mark.skipif(not SHIPPED, reason="the shipped cpu-litert anb predictor is absent")


def _mnas(*argv: str, cwd=None, verb: str = "sweep") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", verb, "--remeasure", "0", "--no-progress",
                           "--latency-source", "shipped", "--json", *argv],
                          capture_output=True, text=True, cwd=cwd or REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _url(kind: str, tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'j.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"


def _study(url: str, name: str = "st"):
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _states(url: str, name: str = "st") -> dict:
    from collections import Counter

    return dict(Counter(t.state.name for t in _study(url, name).get_trials()))


def _one_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


# -- A: a study refuses workers with other settings -----------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_reused_with_another_profile_is_refused(kind, tmp_path):
    url = _url(kind, tmp_path)
    first = _mnas("--storage", url, "--study-name", "st", "--trials", "6", "--out", str(tmp_path / "o1"))
    assert first.returncode == 0, first.stderr[-1500:]
    before = _study(url).user_attrs
    p = _mnas("--storage", url, "--study-name", "st", "--trials", "12", "--profile", "a100",
              "--out", str(tmp_path / "o2"))
    line = _one_line(p)
    assert line == (f"mnas: error: study 'st' in {url} was created with profile 'cpu-litert'; "
                    f"this run asks for 'a100' (use another --study-name)"), line
    assert not (tmp_path / "o2").exists()  # nothing created
    assert _states(url) == {"COMPLETE": 6} and _study(url).user_attrs == before  # nothing changed


def test_study_reused_with_another_reward_or_target_is_refused(tmp_path):
    url = _url("journal", tmp_path)
    first = _mnas("--storage", url, "--study-name", "st", "--trials", "6", "--reward", "hard",
                  "--latency-target", "3", "--out", str(tmp_path / "o"))
    assert first.returncode == 0, first.stderr[-1500:]
    line = _one_line(_mnas("--storage", url, "--study-name", "st", "--trials", "12", "--out", str(tmp_path / "o")))
    assert "study 'st'" in line and "created with reward 'hard'; this run asks for 'soft'" in line, line
    line = _one_line(_mnas("--storage", url, "--study-name", "st", "--trials", "12", "--reward", "hard",
                           "--latency-target", "5", "--out", str(tmp_path / "o")))
    assert "created with latency target 3 ms; this run asks for 5 ms" in line, line
    line = _one_line(_mnas("--storage", url, "--study-name", "st", "--trials", "12", "--latency-target", "7",
                           "--out", str(tmp_path / "o")))  # two settings: both named, both values
    assert "reward 'hard', latency target 3 ms; this run asks for reward 'soft', latency target 7 ms" in line
    assert _states(url) == {"COMPLETE": 6}
    rec = _study(url).user_attrs["identity"]
    assert rec["reward"] == "hard" and rec["latency_target_ms"] == 3.0 and rec["latency_budget_ms"] == 3.0


def test_same_settings_resume_and_the_record_is_written_once(tmp_path):
    url = _url("sqlite", tmp_path)
    args = ["--storage", url, "--study-name", "st", "--out", str(tmp_path / "o")]
    assert _mnas(*args, "--trials", "6").returncode == 0
    rec = _study(url).user_attrs["identity"]
    assert rec["space"] == "anb" and rec["profile"] == "cpu-litert" and rec["accuracy"] == "anb"
    assert rec["latency"] == "predicted" and rec["latency_fingerprint"].startswith("pred-")
    assert rec["reward"] == "soft" and rec["directions"] == ["maximize", "minimize"]
    assert rec["latency_target_ms"] > 0 and rec["latency_budget_ms"] is None  # the default target
    p = _mnas(*args, "--trials", "10")  # resumed with the same settings (and more trials)
    assert p.returncode == 0, p.stderr[-1500:]
    assert json.loads(p.stdout)["trials"] == 10
    attrs = _study(url).user_attrs
    assert attrs["identity"] == rec and attrs["config"]["trials"] == 6  # the creator's, kept


def test_second_worker_with_another_sampler_joins(tmp_path):
    url = _url("journal", tmp_path)
    first = _mnas("--storage", url, "--study-name", "st", "--trials", "6", "--latency-target", "17",
                  "--out", str(tmp_path / "o1"))
    assert first.returncode == 0, first.stderr[-1500:]
    rec = _study(url).user_attrs["identity"]
    # another sampler, seed, batch, trial count and output folder; no target: the study's
    p = _mnas("--storage", url, "--study-name", "st", "--trials", "12", "--sampler", "tpe", "--seed", "3",
              "--batch", "2", "--no-seed-reference", "--out", str(tmp_path / "o2"))
    assert p.returncode == 0, p.stderr[-1500:]
    assert json.loads(p.stdout)["trials"] == 12 and json.loads(p.stdout)["latency_target_ms"] == 17.0
    p = _mnas("--storage", url, "--study-name", "st", "--trials", "16", "--controller", "random",
              "--out", str(tmp_path / "o3"), verb="search")  # a controller joins too
    assert p.returncode == 0, p.stderr[-1500:]
    attrs = _study(url).user_attrs
    assert attrs["identity"] == rec and attrs["config"]["sampler"] == "nsga2"  # not overwritten
    assert _states(url) == {"COMPLETE": 16}


@pytest.fixture(scope="module")
def table_predictor(tmp_path_factory):
    from surrogate.predict.estimators import TableSum
    from surrogate.predict.optable import OpTable
    from surrogate.predict.persist import save_predictor

    out = []
    for k in range(2):  # the same predictor saved twice, in two folders
        d = tmp_path_factory.mktemp(f"pred{k}") / "anb"
        save_predictor(TableSum("anb", OpTable.from_csv(ANB_TABLE)).fit(), d, profile="cpu-litert")
        out.append(d)
    return out


def test_another_predictor_is_refused_a_copy_joins(table_predictor, tmp_path):
    """Checked when the objectives are built (same profile: only their content differs)."""
    from search.accuracy import get_accuracy
    from search.latency import PredictedLatency
    from search.sweep import SweepConfig, run_sweep

    acc = get_accuracy("anb")
    store = open_storage(None)
    cfg = SweepConfig(trials=6, batch=6, study_name="st", out_dir=str(tmp_path / "o"), seed_reference=False)
    run_sweep(cfg, acc, PredictedLatency("cpu-litert", "anb", table_predictor[0]), progress=False, storage=store)
    res = run_sweep(SweepConfig(trials=9, batch=3, study_name="st", out_dir=str(tmp_path / "o"), sampler="tpe"),
                    acc, PredictedLatency("cpu-litert", "anb", table_predictor[1]), progress=False, storage=store)
    assert res.trials == 9  # a copy of the predictor elsewhere is the same predictor
    import re

    with pytest.raises(ValueError, match=r"^study 'st' in memory was created with latency predictor "
                                         rf"'{re.escape(str(table_predictor[0]))}' \(pred-.*; "
                                         r"this run asks for '.*cpu-litert/anb' \(pred-"):
        run_sweep(SweepConfig(trials=12, study_name="st", out_dir=str(tmp_path / "o2")), acc,
                  PredictedLatency("cpu-litert", "anb"), progress=False, storage=store)
    assert not (tmp_path / "o2").exists()


class _ToyAccuracy:
    """A cheap accuracy objective on nasbench-macro (more 1-choices are better)."""
    name, fingerprint = "toy", "toy-1"

    def __init__(self):
        from space import get_space

        self.space = get_space("nasbench-macro")

    def batch(self, idx):
        import numpy as np

        return 0.5 + 0.4 * (np.asarray(idx) == 1).mean(axis=1)


class _ToyLatency:
    def batch(self, idx):
        import numpy as np

        return 1.0 + np.asarray(idx, dtype=float).sum(axis=1)


def test_concurrent_creators_one_record_the_others_refused(tmp_path):
    """Workers creating one study at once with different profiles: one record, written by
    the one creator; every other worker is refused and evaluates nothing."""
    from search.sweep import SweepConfig, run_sweep

    url = f"journal:{tmp_path / 'race.log'}"
    for name in ("r0", "r1", "r2"):
        gate, results = threading.Barrier(3), {}

        def worker(profile: str) -> None:
            cfg = SweepConfig(space="nasbench-macro", accuracy="toy", profile=profile, trials=4, batch=4,
                              storage=url, study_name=name, seed_reference=False, latency_target_ms=5.0,
                              out_dir=str(tmp_path / f"o-{name}-{profile}"))
            store = open_storage(url)
            gate.wait()
            try:
                results[profile] = run_sweep(cfg, _ToyAccuracy(), _ToyLatency(), progress=False,
                                             storage=store).evaluated_here
            except ValueError as exc:
                results[profile] = str(exc)

        threads = [threading.Thread(target=worker, args=(p,)) for p in ("pa", "pb", "pc")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        winner = _study(url, name).user_attrs["identity"]["profile"]
        assert results[winner] == 4, results
        assert all(v == f"study {name!r} in {url} was created with profile {winner!r}; this run asks for "
                        f"{p!r} (use another --study-name)" for p, v in results.items() if p != winner), results
        assert _states(url, name) == {"COMPLETE": 4}


def test_a_study_without_record_is_checked_against_its_old_config_then_adopted(tmp_path, monkeypatch):
    """A study made before studies had records (its last worker's ``config``), or whose
    creator died before writing the record: an older config that differs is refused, else
    the study is adopted and gets the record."""
    from optuna.study import StudyDirection

    import search.studyconfig as sc
    from search.sweep import SweepConfig, run_sweep

    url = f"journal:{tmp_path / 'old.log'}"
    store = open_storage(url)
    both = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    old = store.create_new_study(both, "old")
    store.set_study_user_attr(old, "latency_target_ms", 5.0)
    store.set_study_user_attr(old, "config", {"space": "nasbench-macro", "profile": "pa", "accuracy": "toy",
                                              "reward": "hard", "latency_target_ms": 5.0})

    def run(name, profile, **kw):
        cfg = SweepConfig(space="nasbench-macro", accuracy="toy", profile=profile, trials=4, batch=4,
                          reward="hard", storage=url, study_name=name, seed_reference=False,
                          out_dir=str(tmp_path / "o"), **kw)
        return run_sweep(cfg, _ToyAccuracy(), _ToyLatency(), progress=False, storage=store)

    with pytest.raises(ValueError, match="study 'old' .* was created with profile 'pa'; this run asks for 'pb'"):
        run("old", "pb")
    assert run("old", "pa").trials == 4  # adopted: its target and budget kept
    rec = _study(url, "old").user_attrs["identity"]
    assert rec["profile"] == "pa" and rec["latency_target_ms"] == rec["latency_budget_ms"] == 5.0
    monkeypatch.setattr(sc, "RECORD_WAIT_S", 0.2)
    store.create_new_study(both, "orphan")  # its creator died before the record
    assert run("orphan", "pc", latency_target_ms=3.0).trials == 4
    with pytest.raises(ValueError, match="study 'orphan' .* was created with profile 'pc'; this run asks for 'pa'"):
        run("orphan", "pa")


# -- B: bad inputs, one line, nothing created ------------------------------------------------------
@pytest.mark.parametrize("verb, argv, needle", [
    ("sweep", ["--latency-target", "1e308"], "--latency-target must be a finite latency in ms, 0 < T <= 1e6"),
    ("search", ["--latency-target", "1e308"], "--latency-target"),
    ("sweep", ["--latency-target", "inf"], "--latency-target"),
    ("sweep", ["--latency-target", "1e7"], "0 < T <= 1e6"),
    ("sweep", ["--study-name", "../../x"], "--study-name '../../x'"),
    ("search", ["--study-name", "../../x"], "--study-name '../../x'"),
    ("sweep", ["--study-name", "ABS"], "must stay inside it"),
    ("sweep", ["--study-name", ""], "--study-name must not be empty"),
    ("sweep", ["--study-name", "a\tb", "--out", "o"], "control characters"),
    ("sweep", ["--out", "afile/x"], "lies under the file"),
    ("sweep", ["-o", "afile"], "is a file"),
    ("search", ["--out", "afile/x"], "lies under the file"),
])
def test_bad_sweep_input_one_line_exit_2_nothing_created(verb, argv, needle, tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "afile").write_text("x")
    argv = [str(tmp_path / "abs") if a == "ABS" else a for a in argv]  # absolute, yet inside tmp_path
    line = _one_line(_mnas("--trials", "3", "--storage", f"sqlite:///{work / 's.db'}", *argv, cwd=work, verb=verb))
    assert "mnas" in line and needle in line, line
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == \
        ["a", "a/b", "a/b/afile"]  # no db file, no study, no out folder, nothing outside
    assert needle in line, line
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == \
        ["a", "a/b", "a/b/afile"]  # no db file, no study, no out folder, nothing outside


# -- C: a full study's dead-worker claims are failed ----------------------------------------------
_CLAIMER = """
import sys, time
import optuna
from optuna.trial import TrialState, create_trial
from search.storage import open_storage, worker_id
storage = open_storage(sys.argv[1])
sid = storage.get_study_id_from_name("st")
for k in range(3):  # a killed worker's claims beyond the last slot (a batch claimed, not settled)
    storage.create_new_trial(sid, template_trial=create_trial(
        state=TrialState.RUNNING, user_attrs={"worker": worker_id(), "claim": f"{worker_id()}#{k}"}))
print("claimed", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_killed_workers_claims_failed_when_the_study_is_full(kind, tmp_path):
    url = _url(kind, tmp_path)
    args = ["--storage", url, "--study-name", "st", "--trials", "6", "--out", str(tmp_path / "o")]
    assert _mnas(*args).returncode == 0
    claimer = subprocess.Popen([sys.executable, "-c", _CLAIMER, url], stdout=subprocess.PIPE, text=True,
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert claimer.stdout.readline().strip() == "claimed"
    claimer.send_signal(signal.SIGKILL)
    claimer.wait()
    assert _states(url) == {"COMPLETE": 6, "RUNNING": 3}
    p = _mnas(*args)  # a worker that finds the study full
    assert p.returncode == 0 and json.loads(p.stdout)["evaluated_here"] == 0, p.stderr[-1500:]
    assert _states(url) == {"COMPLETE": 6, "FAIL": 3}  # none left RUNNING
