"""Multi-objective sweeps on the surrogates, driven through Optuna's ask/tell.

The settings (:class:`SweepConfig`, which builds the objectives) are
:mod:`search.studyconfig`'s; finalists are timed by :mod:`surrogate.measure.finalists`.

Objectives: accuracy (maximised, from an accuracy objective) and latency in ms
(minimised, from the shipped latency predictor of the profile and space). The
proposals come from an Optuna sampler (NSGA-II, TPE, random) or from a controller
(:mod:`search.controllers`: PPO, evolution, random, gradient) whose proposals are
enqueued and asked, so all trials share one study. With a storage URL
(``sqlite:///sweep.db``, any SQLAlchemy URL, or ``journal:./sweep.log`` for Optuna's
journal file), any number of processes on any number of machines join one study;
each stops when the study holds ``trials`` finished trials. A killed worker's
unfinished trial is marked failed by the next worker started on the same host, and
a rerun continues the study: nothing is lost or counted twice.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from space import format_arch
from space.spaces import get_space

from .controllers.base import SweepContext
from .pareto import hypervolume_2d, pareto_front
from .reward import MnasReward
from .storage import is_rdb, open_storage, worker_id
from .studyconfig import (DIRECTIONS, SAMPLERS, SweepConfig, open_study, resolve_device, storage_label,
                          study_record, trial_metadata)

if TYPE_CHECKING:
    from surrogate.measure.profiles import DeviceProfile

__all__ = ["SAMPLERS", "SweepConfig", "SweepResult", "default_target", "finalists_host_match",
           "make_sampler", "open_storage", "remeasure_finalists", "run_sweep", "trial_metadata",
           "write_summary"]


@dataclass
class SweepResult:
    """What a sweep returns: its settings, trial counts, front, hypervolume, files."""
    config: dict
    trials: int
    evaluated_here: int
    pareto: list[dict]
    hypervolume: float
    hypervolume_reference: dict
    latency_target_ms: float
    wall_s: float
    trials_per_s: float
    files: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    finalists: list[dict] = field(default_factory=list)
    host_match: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return asdict(self)

    def trials_frame(self):
        """Every finished trial (``trials.csv`` on disk) as a pandas DataFrame."""
        from surrogate.frames import require_pandas

        path = self.files.get("trials")
        if not path or not Path(path).is_file():
            raise FileNotFoundError(f"trials file {path!r} of this sweep is absent")
        return require_pandas().read_csv(path, dtype={"trial": "int64", "arch": str,
                                                      "worker": str}, keep_default_na=False)

    def pareto_frame(self):
        """The Pareto front (``pareto``) as a pandas DataFrame, by rising latency."""
        from surrogate.frames import records_frame

        cols = ["trial", "arch", "accuracy", "latency_ms", "reward"]
        df = records_frame(self.pareto, cols, ints=["trial"],
                           floats=["accuracy", "latency_ms", "reward"])
        return df.sort_values("latency_ms", kind="stable").reset_index(drop=True)


# -- storage and samplers ---------------------------------------------------------------
def make_sampler(name: str, seed: int, n_decisions: int):
    """Optuna sampler ``nsga2``, ``tpe`` or ``random`` seeded with ``seed``."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=50)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=20)
    return optuna.samplers.RandomSampler(seed=seed)


# -- the sweep --------------------------------------------------------------------------
def default_target(latency, space, seed: int = 0) -> float:
    """Median predicted latency of 1,000 random members (a neutral default T)."""
    idx = space.sample_indices(np.random.default_rng(seed), 1000)
    return float(np.median(latency.batch(idx)))


def _complete(study):
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def run_sweep(cfg: SweepConfig, accuracy, latency, *, progress: bool = True,
              controller=None, storage=None, on_phase=None) -> SweepResult:
    """Run (or join, or resume) the sweep of ``cfg`` until the study has exactly
    ``cfg.trials`` COMPLETE trials (:mod:`search.ledger`); writes trials.csv, pareto.csv,
    front.png and summary.json.

    ``storage``: an opened Optuna storage (default: ``open_storage(cfg.storage)``).
    ``on_phase(name)`` is called at ``open``, ``reference`` (after each reference claim),
    ``claimed`` (a batch claimed, not evaluated) and ``told`` (a batch told): the fault
    tests kill a worker there.
    """
    import optuna

    from .ledger import Ledger, Mirror

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(cfg.space)
    cfg.check_accuracy(accuracy)
    t0 = time.perf_counter()
    storage = open_storage(cfg.storage) if storage is None else storage
    study, record = _open_study(cfg, storage, space, accuracy, latency)
    target = float(record["latency_target_ms"])
    reward = MnasReward.from_name(cfg.reward, target)
    dists = _distributions(space)
    worker = worker_id()
    ledger = Ledger(study, storage, worker, cfg.trials, on_phase=on_phase)
    ledger.on_phase("open")
    out_dir = Path(cfg.out_dir or Path("mnas_runs") / cfg.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    if controller is not None:  # it learns from the study and keeps the rest in study-named files
        controller.before_sweep(SweepContext(study, space, reward, out_dir, trials=cfg.trials,
                                             reward_kind=cfg.reward, accuracy=accuracy, latency=latency))
    mirror = None if controller is not None else Mirror(
        make_sampler(cfg.sampler, cfg.seed, space.n_decisions), list(DIRECTIONS), dists)
    refs = _reference_members(space) if cfg.seed_reference else []
    ledger.refresh()
    bar = _progress_bar(cfg, ledger) if progress else None
    # a latency target given as a hard budget (when the study was created) is an Optuna
    # constraint (feasible: <= 0), which NSGA-II's constrained domination and the dashboard read
    budget = record.get("latency_budget_ms")
    batches = _Batches(cfg, space, dists, ledger, _worker_meta(cfg, study, storage, worker, latency),
                       refs, controller, mirror, accuracy, latency, reward,
                       None if budget is None else float(budget))
    try:
        evaluated = batches.run(storage, bar)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    result = _summarise(cfg, study, space, target, reward, out_dir, evaluated, wall, latency, accuracy)
    if controller is not None:
        controller.after_sweep(result)
    return result


def _open_study(cfg: SweepConfig, storage, space, accuracy, latency):
    """Create or join the study of ``cfg`` (:mod:`search.studyconfig`: a worker with other
    settings is refused); (the study, its record)."""
    import warnings

    import optuna

    wanted = study_record(cfg, space, accuracy, latency, list(DIRECTIONS))
    study, record = open_study(
        storage, cfg.name, wanted, where=storage_label(cfg.storage),
        sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        default_target=lambda: default_target(latency, space),
        created_attrs={"config": {k: v for k, v in asdict(cfg).items() if k != "out_dir"}})
    if "latency_target_ms" not in study.user_attrs:  # written once, by the creator or an adopter
        study.set_user_attr("latency_target_ms", float(record["latency_target_ms"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    return study, record


def _distributions(space) -> dict:
    from optuna.distributions import CategoricalDistribution

    return {d.name: CategoricalDistribution(tuple(range(d.n))) for d in space.decisions}


def _progress_bar(cfg: SweepConfig, ledger):
    from tqdm import tqdm

    return tqdm(total=cfg.trials, initial=min(ledger.complete(), cfg.trials), unit="trial",
                desc=f"sweep {cfg.name}", file=sys.stderr, dynamic_ncols=True)


def _worker_meta(cfg: SweepConfig, study, storage, worker: str, latency) -> dict:
    """The user attributes each trial of this worker carries."""
    meta = {"worker": worker, **trial_metadata(cfg, latency)}
    if is_rdb(storage):  # relational: each attribute costs queries, so the worker's constants go
        study.set_user_attr(f"worker:{worker}", meta)  # once into the study, the trial keeps its id
        meta = {"worker": worker}
    return meta


@dataclass
class _Batches:
    """One worker's loop: claim a batch, evaluate it on the objectives, tell it."""

    cfg: SweepConfig
    space: Any
    dists: dict
    ledger: Any
    meta: dict
    refs: list
    controller: Any
    mirror: Any
    accuracy: Any
    latency: Any
    reward: MnasReward
    budget: float | None

    def run(self, storage, bar) -> int:
        """Batches until the study holds ``cfg.trials`` COMPLETE trials; the trials told here."""
        from .storage import Heartbeat

        ledger, evaluated = self.ledger, 0
        with Heartbeat(storage) as beat:
            while True:
                ledger.refresh()
                if ledger.complete() >= self.cfg.trials:
                    # a killed worker's claims beyond the last slot stay RUNNING once the study
                    # is full: nobody would fail them but this pass before leaving
                    ledger.fail_dead()
                    return evaluated
                free = ledger.free()
                if free <= 0:  # every slot is held by a running trial: wait for it to end or die
                    ledger.wait()
                    continue
                kept = ledger.settle(self.claim(min(self.cfg.batch, free)))
                if not kept:
                    continue
                told = self.evaluate(kept, beat)
                evaluated += told
                if bar is not None:
                    bar.update(told)

    def claim(self, k: int) -> list:
        """Claim ``k`` trials: missing reference members first, then proposals."""
        names = [d.name for d in self.space.decisions]
        claims = []
        for name, idx in self.ledger.missing_references(self.refs)[:k]:
            attrs = {**self.meta, "arch": format_arch(self.space.to_arch(idx)), "seed_reference": name}
            claims.append(self.ledger.claim(dict(zip(names, map(int, idx))), self.dists, idx, attrs))
            self.ledger.on_phase("reference")
        if len(claims) < k:
            if self.controller is not None:
                props = [(dict(zip(names, map(int, idx))), {}) for idx in self.controller.propose(k - len(claims))]
            else:
                self.mirror.sync(self.ledger.trials)
                props = self.mirror.ask(k - len(claims))
            for params, sys_attrs in props:
                c = self.space.canonical([params[n] for n in names])
                claims.append(self.ledger.claim(params, self.dists, c,
                                                {**self.meta, "arch": format_arch(self.space.to_arch(c))},
                                                sys_attrs))
        self.ledger.on_phase("claimed")
        return claims

    def evaluate(self, kept: list, beat) -> int:
        """Evaluate the settled claims and tell them; how many were told."""
        beat.trials = [tid for tid, _, _ in kept]
        canon = np.array([c for _, _, c in kept], dtype=np.int64)
        acc = self.accuracy.batch(canon)
        lat = self.latency.batch(canon)
        rew = self.reward(acc, lat)
        told = []
        for (tid, _, _), a, l_ in zip(kept, acc, lat):
            c = None if self.budget is None else float(l_) - self.budget
            told.append(self.ledger.tell(tid, [float(a), float(l_)], constraint=c))
        beat.trials = []
        self.ledger.on_phase("told")
        if self.controller is not None:
            self.controller.observe([tuple(c) for c in canon], acc, lat, rew)
        return sum(told)


def _reference_members(space) -> list[tuple[str, tuple[int, ...]]]:
    from space.reference import REFERENCE

    out = []
    for name, a in sorted(REFERENCE.items()):
        try:
            out.append((name, space.from_arch(a)))
        except ValueError:
            continue
    return out


def _summarise(cfg, study, space, target, reward, out_dir: Path, evaluated, wall, latency,
               accuracy) -> SweepResult:
    done = _complete(study)
    acc = np.array([t.values[0] for t in done])
    lat = np.array([t.values[1] for t in done])
    archs = [t.user_attrs.get("arch", "") for t in done]
    rew = reward(acc, lat) if len(done) else np.array([])
    ref = {"latency_ms": 2.0 * target, "accuracy": 0.0}
    front_idx = pareto_front(lat, acc, unique=True) if len(done) else np.array([], dtype=int)
    pareto = [{"arch": archs[i], "accuracy": float(acc[i]), "latency_ms": float(lat[i]),
               "reward": float(rew[i]), "trial": done[i].number} for i in front_idx]
    hv = hypervolume_2d(lat, acc, ref_latency=ref["latency_ms"], ref_accuracy=ref["accuracy"]) if len(done) else 0.0
    files = {"trials": str(out_dir / "trials.csv"), "pareto": str(out_dir / "pareto.csv"),
             "plot": str(out_dir / "front.png"), "summary": str(out_dir / "summary.json")}
    _write_csv(out_dir / "trials.csv", ["trial", "arch", "accuracy", "latency_ms", "reward", "worker"],
               [[t.number, a, f"{x:.6f}", f"{y:.6f}", f"{r:.6f}", t.user_attrs.get("worker", "")]
                for t, a, x, y, r in zip(done, archs, acc, lat, rew)])
    _write_csv(out_dir / "pareto.csv", ["trial", "arch", "accuracy", "latency_ms", "reward"],
               [[p["trial"], p["arch"], f"{p['accuracy']:.6f}", f"{p['latency_ms']:.6f}",
                 f"{p['reward']:.6f}"] for p in pareto])
    if len(done):
        _plot(out_dir / "front.png", lat, acc, front_idx, target, cfg.name)
    return SweepResult(config={k: v for k, v in asdict(cfg).items()}, trials=len(done),
                       evaluated_here=evaluated, pareto=pareto, hypervolume=hv,
                       hypervolume_reference=ref, latency_target_ms=float(target), wall_s=wall,
                       trials_per_s=evaluated / wall if wall > 0 else 0.0, files=files,
                       latency=latency.describe() if hasattr(latency, "describe") else {},
                       accuracy={"name": accuracy.name,
                                 "fingerprint": getattr(accuracy, "fingerprint", None)})


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    from surrogate.tables import write_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_atomic(path, buf.getvalue())  # per-process temporary names: workers share out dirs


def _plot(path: Path, lat, acc, front_idx, target, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    from surrogate.tables import atomic_path

    fig = Figure(figsize=(6, 4.2), dpi=120)
    ax = fig.subplots()
    ax.scatter(lat, 100 * acc, s=8, alpha=0.35, label=f"trials ({len(lat)})")
    ax.plot(lat[front_idx], 100 * acc[front_idx], "o-", color="C3", ms=4, label="Pareto front")
    ax.axvline(target, color="k", ls=":", lw=0.8, label=f"target T = {target:.1f} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)


def write_summary(result: SweepResult, path: str | os.PathLike) -> None:
    """Write ``result`` as JSON to ``path`` atomically."""
    from surrogate.tables import write_json_atomic

    write_json_atomic(path, result.as_dict())




# -- finalists (timed by surrogate.measure.finalists) ----------------------------------------
def remeasure_finalists(result: SweepResult, k: int, *, progress: bool = True,
                        cache_dir: str | None = None, device: DeviceProfile | None = None) -> list[dict]:
    """Time the ``k`` front architectures nearest the target end to end on the device
    (``device``: the resolved profile, default the result's) and report them beside their
    predicted latency (``flag`` beyond 10%); sets ``result.finalists`` and ``host_match``.

    They are timed the way the predictor's table was (:func:`surrogate.measure.finalists.remeasure`).
    """
    from surrogate.measure.finalists import remeasure

    if k < 1 or not result.pareto:
        return []
    cfg = result.config
    front = sorted(result.pareto, key=lambda p: abs(p["latency_ms"] - result.latency_target_ms))[:k]
    device = device if device is not None else resolve_device(cfg["profile"])
    rows, reference_here = remeasure(device, cfg["space"], front, out_dir=Path(result.files["summary"]).parent,
                                     latency=result.latency, progress=progress, cache_dir=cache_dir, chunk=k)
    result.finalists = rows
    result.host_match = finalists_host_match(result, reference_here)
    return rows


def finalists_host_match(result: SweepResult, reference_ms_here: float | None = None) -> dict:
    """Whether the tables behind the sweep's latency came from this host kind, with a few
    plain lines when not and a finalist is flagged (:func:`surrogate.measure.finalists.tables_host_match`)."""
    from surrogate.measure.finalists import tables_host_match

    cfg = result.config
    return tables_host_match(cfg["profile"], cfg["space"], result.latency, result.finalists, reference_ms_here)
