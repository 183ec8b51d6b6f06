"""Multi-objective sweeps on the surrogates, driven through Optuna's ask/tell.

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

import numpy as np

from space import format_arch
from space.spaces import get_space

from .controllers.base import SweepContext
from .pareto import hypervolume_2d, pareto_front
from .reward import MnasReward
from .storage import is_rdb, open_storage, worker_id
from .studyconfig import (DIRECTIONS, check_latency_target, check_study_name, open_study, storage_label,
                          study_record, trial_metadata)

__all__ = ["SAMPLERS", "SweepConfig", "SweepResult", "default_target", "finalists_host_match",
           "make_sampler", "open_storage", "reference_baseline_ms", "remeasure_finalists",
           "run_sweep", "trial_metadata", "write_summary"]

SAMPLERS = ("nsga2", "tpe", "random")


@dataclass
class SweepConfig:
    """Settings of one sweep (JSON-able)."""

    space: str = "anb"
    profile: str = "cpu-litert"
    accuracy: str = "anb"
    sampler: str = "nsga2"
    controller: str | None = None
    trials: int = 300
    seed: int = 0
    batch: int = 8
    storage: str | None = None
    study_name: str | None = None
    latency_target_ms: float | None = None
    reward: str = "soft"
    seed_reference: bool = True
    out_dir: str | None = None
    data: str | None = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials must be a positive integer, got {self.trials!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        check_latency_target(self.latency_target_ms)
        check_study_name(self.study_name, as_path=self.out_dir is None)
        if self.reward not in ("soft", "hard"):
            raise ValueError(f"reward must be 'soft' or 'hard', got {self.reward!r}")

    @property
    def name(self) -> str:
        """The study name: given, else derived from space, profile, objective, method and seed."""
        how = self.controller or self.sampler
        return self.study_name or f"{self.space}-{self.profile}-{self.accuracy}-{how}-seed{self.seed}"


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
    from optuna.distributions import CategoricalDistribution

    from .ledger import Ledger, Mirror
    from .storage import Heartbeat

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get_space(cfg.space)
    if accuracy.space.name != space.name:
        raise ValueError(f"accuracy objective {accuracy.name!r} is for space {accuracy.space.name!r}, "
                         f"not {space.name!r}")
    t0 = time.perf_counter()
    storage = open_storage(cfg.storage) if storage is None else storage
    directions = list(DIRECTIONS)
    # the study remembers what it is (search.studyconfig): a worker with other settings is refused
    wanted = study_record(cfg, space, accuracy, latency, directions)
    study, record = open_study(
        storage, cfg.name, wanted, where=storage_label(cfg.storage),
        sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        default_target=lambda: default_target(latency, space),
        created_attrs={"config": {k: v for k, v in asdict(cfg).items() if k != "out_dir"}})
    target = float(record["latency_target_ms"])
    if "latency_target_ms" not in study.user_attrs:  # written once, by the creator or an adopter
        study.set_user_attr("latency_target_ms", target)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    reward = MnasReward.from_name(cfg.reward, target)
    dists = {d.name: CategoricalDistribution(tuple(range(d.n))) for d in space.decisions}
    worker = worker_id()
    ledger = Ledger(study, storage, worker, cfg.trials, on_phase=on_phase)
    ledger.on_phase("open")
    out_dir = Path(cfg.out_dir or Path("mnas_runs") / cfg.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    if controller is not None:  # it learns from the study and keeps the rest in study-named files
        controller.before_sweep(SweepContext(study, space, reward, out_dir, trials=cfg.trials,
                                             reward_kind=cfg.reward, accuracy=accuracy, latency=latency))
    mirror = None if controller is not None else Mirror(
        make_sampler(cfg.sampler, cfg.seed, space.n_decisions), directions, dists)
    refs = _reference_members(space) if cfg.seed_reference else []
    ledger.refresh()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.trials, initial=min(ledger.complete(), cfg.trials), unit="trial",
                   desc=f"sweep {cfg.name}", file=sys.stderr, dynamic_ncols=True)
    evaluated = 0
    meta = {"worker": worker, **trial_metadata(cfg, latency)}
    if is_rdb(storage):  # relational: each attribute costs queries, so the worker's constants go
        study.set_user_attr(f"worker:{worker}", meta)  # once into the study, the trial keeps its id
        meta = {"worker": worker}
    # a latency target given as a hard budget (when the study was created) is an Optuna
    # constraint (feasible: <= 0), which NSGA-II's constrained domination and the dashboard read
    budget = record.get("latency_budget_ms")
    budget = float(budget) if budget is not None else None
    names = [d.name for d in space.decisions]
    try:
        with Heartbeat(storage) as beat:
            while True:
                ledger.refresh()
                if ledger.complete() >= cfg.trials:
                    # a killed worker's claims beyond the last slot stay RUNNING once the study
                    # is full: nobody would fail them but this pass before leaving
                    ledger.fail_dead()
                    break
                free = ledger.free()
                if free <= 0:  # every slot is held by a running trial: wait for it to end or die
                    ledger.wait()
                    continue
                k = min(cfg.batch, free)
                claims = []
                for name, idx in ledger.missing_references(refs)[:k]:
                    attrs = {**meta, "arch": format_arch(space.to_arch(idx)), "seed_reference": name}
                    claims.append(ledger.claim(dict(zip(names, map(int, idx))), dists, idx, attrs))
                    ledger.on_phase("reference")
                if len(claims) < k:
                    if controller is not None:
                        props = [(dict(zip(names, map(int, idx))), {}) for idx in controller.propose(k - len(claims))]
                    else:
                        mirror.sync(ledger.trials)
                        props = mirror.ask(k - len(claims))
                    for params, sys_attrs in props:
                        c = space.canonical([params[n] for n in names])
                        claims.append(ledger.claim(params, dists, c, {**meta, "arch": format_arch(space.to_arch(c))},
                                                   sys_attrs))
                ledger.on_phase("claimed")
                kept = ledger.settle(claims)
                if not kept:
                    continue
                beat.trials = [tid for tid, _, _ in kept]
                canon = np.array([c for _, _, c in kept], dtype=np.int64)
                acc = accuracy.batch(canon)
                lat = latency.batch(canon)
                rew = reward(acc, lat)
                told = []
                for (tid, _, _), a, l_ in zip(kept, acc, lat):
                    c = None if budget is None else float(l_) - budget
                    told.append(ledger.tell(tid, [float(a), float(l_)], constraint=c))
                beat.trials = []
                ledger.on_phase("told")
                evaluated += sum(told)
                if controller is not None:
                    controller.observe([tuple(c) for c in canon], acc, lat, rew)
                if bar is not None:
                    bar.update(sum(told))
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


# -- finalists ------------------------------------------------------------------------
def remeasure_finalists(result: SweepResult, k: int, *, progress: bool = True,
                        cache_dir: str | None = None) -> list[dict]:
    """Time the ``k`` front architectures nearest the target end to end on the profile's
    device and report them beside their predicted latency (``flag`` beyond 10%).

    They are timed the way the predictor's table was (its estimator and, for a
    ``+ref`` table, its reference base), so prediction and measurement share a scale.
    """
    from space.blockstring import parse_arch
    from surrogate.measure.clocks import split_estimator
    from surrogate.measure.host import table_reference_ms
    from surrogate.measure.hostjob import NETWORK_SETTINGS
    from surrogate.measure.jobs import measure_models
    from surrogate.measure.profiles import get_profile
    from surrogate.measure.timing import MeasureSettings
    from surrogate.tables import table_timing

    if k < 1 or not result.pareto:
        return []
    cfg = result.config
    front = sorted(result.pareto, key=lambda p: abs(p["latency_ms"] - result.latency_target_ms))[:k]
    prof = get_profile(cfg["profile"])
    out = Path(result.files["summary"]).parent
    source = (result.latency or {}).get("table_source")
    timing = table_timing(source) if source else {}
    same_clock = timing.get("clock") == prof.clock
    settings = MeasureSettings(**NETWORK_SETTINGS,
                               estimator=timing.get("estimator") if same_clock else None)
    archs = [parse_arch(p["arch"]) for p in front]
    summary = measure_models(prof, cfg["space"], [(a, "finalist") for a in archs],
                             out_dir=out, table_name="finalists_models.csv", progress=progress,
                             settings=settings, chunk=k, cache_dir=cache_dir, convert_all_cores=True,
                             reference_base_ms=timing.get("reference_base_ms") if same_clock else None)
    by_arch = {r["arch"]: r for r in summary.rows}
    timed = [by_arch.get(format_arch(a)) for a in archs]  # the rows of the front, in its order
    # the reference operator when the predictor's own tables were timed (the shipped
    # tables' when the predictor names none or its table is gone)
    base = (table_reference_ms(source) if source else None) or reference_baseline_ms(cfg["profile"], cfg["space"])
    # finalists timed reference-paired (+ref) are on the tables' reference scale already
    paired = bool(settings.estimator) and split_estimator(settings.estimator)[1]
    rows = []
    for p, r in zip(front, timed):
        m = r["median_ms"] if r else None
        err = (p["latency_ms"] / m - 1) if m else None
        # the reference operator now vs when the tables were timed: a busy or different
        # machine shows up here, and the normalised figure discounts it (paired: already)
        ratio = (r["ref_ms"] / base) if (r and base and np.isfinite(r.get("ref_ms", np.nan))) else None
        norm = m if paired else ((m / ratio) if (m and ratio) else None)
        rows.append({**p, "measured_ms": m, "error": err,
                     "flag": bool(err is not None and abs(err) > 0.10),
                     "reference_ratio": ratio, "reference_paired": paired,
                     "measured_normalised_ms": norm})
    result.finalists = rows
    refs = [r["ref_ms"] for r in timed if r and np.isfinite(r.get("ref_ms", np.nan))]
    result.host_match = finalists_host_match(result, float(np.median(refs)) if refs else None)
    return rows


def finalists_host_match(result: SweepResult, reference_ms_here: float | None = None) -> dict:
    """Whether the tables behind the sweep's latency came from this host kind
    (:func:`surrogate.measure.host.host_match`), with ``message``: a few plain lines when
    they did not (or cannot be told) and a finalist disagrees by more than 10%."""
    from surrogate.measure.host import host_match, predictor_table
    from surrogate.tables import table_path

    cfg, lat = result.config, result.latency or {}
    subject = "the latency tables behind this predictor"
    if lat.get("kind") == "measured":
        subject = "the end-to-end table this sweep looked latency up in"
        table = table_path(cfg["profile"], cfg["space"], "models")
        table = table if table.is_file() else None
    else:
        table = predictor_table(lat.get("predictor"), cfg["profile"], cfg["space"])
    if table is None:
        return {"table": None, "same": None, "message": []}
    try:
        m = host_match(table, reference_ms_here=reference_ms_here)
    except (ValueError, OSError) as exc:  # a bad provenance file must not lose a finished sweep
        return {"table": str(table), "same": None, "error": str(exc), "message": []}
    flagged = any(f.get("flag") for f in result.finalists)
    return {**m.as_dict(), "flagged": flagged,
            "message": m.explain(cfg["space"], reference=False, subject=subject)
            if flagged and m.same is not True else []}


def reference_baseline_ms(profile: str, space: str) -> float | None:
    """Median reference-operator time in the shipped tables of (profile, space), if any."""
    from surrogate.tables import Table, reference_baseline, table_path

    for table in (Table.models(table_path(profile, space, "models")),
                  Table.ops(table_path(profile, space, "ops"))):
        base = reference_baseline(table)
        if base is not None:
            return base
    return None
