"""Sweeps at scale: throughput per storage and worker count, and the fault matrix.

Worker processes are forked from this process after the imports (so a restart costs
milliseconds, not an interpreter start) and run :func:`search.sweep.run_sweep` on the
shipped anb predictor and accuracy surrogate, nothing timed. A fault SIGKILLs a worker:
``open`` (before its first trial), ``reference`` (between the reference networks'
claims), ``claimed`` (mid-trial: a batch claimed, not told) or ``random`` (from outside,
at a random moment); the killed worker is restarted. Afterwards the study must hold
exactly N COMPLETE trials, none RUNNING or WAITING, no number twice, and every worker's
summary must report the same total and hypervolume.

    python bench/sweep_scale.py [--quick] [--pg-url URL] [--only throughput|faults]

Without ``--pg-url`` a throwaway PostgreSQL server is started (tests/pgserver.py; as
root it runs as the ``postgres`` user), durable (fsync on). Writes
``bench/results/sweep_scale.{json,md}``.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, base_parser, md_table, write_results

METHODS = ("nsga2", "tpe", "ppo", "evolution")
FAULTS = ("open", "reference", "claimed", "random")
TARGET_MS = 17.0


_PREDICTOR: list = []


def predictor_dir() -> str | None:
    """None: the shipped anb predictor loads; else a TableSum on the shipped anb table, saved
    once in a temporary folder (the shipped one does not load in this checkout)."""
    if not _PREDICTOR:
        import subprocess

        # tried in a child interpreter: xgboost used in this process before a fork hangs
        # the forked workers in their own xgboost calls (OpenMP is not fork-safe)
        probe = subprocess.run([sys.executable, "-c", "from search.latency import PredictedLatency; "
                                "PredictedLatency('cpu-litert', 'anb')"], cwd=REPO,
                               capture_output=True, text=True)
        if probe.returncode == 0:
            _PREDICTOR.append(None)
        else:
            from surrogate.predict.estimators import TableSum
            from surrogate.predict.optable import OpTable
            from surrogate.predict.persist import save_predictor
            from surrogate.tables import tables_dir

            d = Path(tempfile.mkdtemp(prefix="mnas-pred-")) / "anb"
            table = OpTable.from_csv(tables_dir() / "cpu-litert" / "anb_ops.csv")
            save_predictor(TableSum("anb", table).fit(), d, profile="cpu-litert")
            _PREDICTOR.append(str(d))
    return _PREDICTOR[0]


def _child(url: str, study: str, n: int, method: str, seed: int, out: Path, fault: str | None,
           result: Path, batch: int) -> None:
    """Body of a forked worker (never returns)."""
    code = 1
    try:
        from search.accuracy import get_accuracy
        from search.controllers import CONTROLLERS, make_controller
        from search.latency import PredictedLatency
        from search.sweep import SweepConfig, run_sweep
        from space.spaces import get_space

        counts: dict[str, int] = {}
        at = {"open": 1, "reference": 1, "claimed": 1}

        def on_phase(phase: str) -> None:
            counts[phase] = counts.get(phase, 0) + 1
            if phase == fault and counts[phase] == at.get(phase, -1):
                os.kill(os.getpid(), signal.SIGKILL)

        ctrl_name = method if method in CONTROLLERS else None
        ctrl = make_controller(method, get_space("anb"), seed=seed) if ctrl_name else None
        cfg = SweepConfig(trials=n, storage=url, study_name=study, seed=seed, batch=batch,
                          sampler=method if not ctrl_name else "random", controller=ctrl_name,
                          latency_target_ms=TARGET_MS, out_dir=str(out))
        res = run_sweep(cfg, get_accuracy("anb"), PredictedLatency("cpu-litert", "anb", predictor_dir()),
                        progress=False, controller=ctrl, on_phase=on_phase)
        result.write_text(json.dumps({"trials": res.trials, "evaluated_here": res.evaluated_here,
                                      "hypervolume": res.hypervolume, "pareto": len(res.pareto)}))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - report and leave
        result.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}")
    os._exit(code)


def fleet(url: str, n: int, methods=METHODS, faults: dict[int, str] | None = None,
          random_kills: int = 0, batch: int = 8, seed: int = 0, timeout: float = 300) -> dict:
    """Run one worker per method on ``url`` until done, applying ``faults`` (worker index
    -> phase, once each) and ``random_kills`` outside kills; the study's health and the
    summaries."""
    import optuna

    from search.storage import open_storage, study_health

    faults = dict(faults or {})
    predictor_dir()  # decided before the fork
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="mnas-fleet-"))
    study = f"fleet-{os.getpid()}-{int(time.time() * 1e6)}"
    procs: dict[int, int] = {}
    runs = {i: 0 for i in range(len(methods))}
    kills = []

    def start(i: int, fault: str | None) -> None:
        runs[i] += 1
        res = work / f"w{i}.{runs[i]}.json"
        pid = os.fork()
        if pid == 0:
            _child(url, study, n, methods[i], seed * 100 + i, work / "out", fault, res, batch)
        procs[i] = pid

    t0 = time.perf_counter()
    final: dict[int, str] = {}
    # a worker to kill while it claims the references or holds a claimed batch starts first
    # (a slow starter, PPO, would otherwise join a finished study and never reach the fault)
    first = sorted((i for i, f in faults.items() if f in ("reference", "claimed")),
                   key=lambda i: faults[i] != "reference")  # the reference one seeds the study
    order = first + [i for i in range(len(methods)) if i not in first]
    for j, i in enumerate(order):
        start(i, faults.get(i) if faults.get(i) != "random" else None)
        if i in first:  # the next starts once this one has died at its fault
            until, done, status = time.perf_counter() + 60, 0, 0
            while time.perf_counter() < until and not done:
                time.sleep(0.01)
                done, status = os.waitpid(procs[i], os.WNOHANG)
            if done and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                kills.append({"worker": i, "method": methods[i], "run": runs[i]})
                start(i, None)
            elif done:
                del procs[i]
                final[i] = str(work / f"w{i}.{runs[i]}.json")
    pending_random = random_kills + sum(f == "random" for f in faults.values())
    next_kill = time.perf_counter() + rng.uniform(0.2, 1.5)
    while procs and time.perf_counter() - t0 < timeout:
        if pending_random and time.perf_counter() > next_kill:
            i = rng.choice(sorted(procs))
            os.kill(procs[i], signal.SIGKILL)
            pending_random -= 1
            next_kill = time.perf_counter() + rng.uniform(0.2, 1.5)
        for i, pid in list(procs.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
            del procs[i]
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                kills.append({"worker": i, "method": methods[i], "run": runs[i]})
                start(i, None)  # restarted, without the fault
            else:
                final[i] = str(work / f"w{i}.{runs[i]}.json")
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    for pid in procs.values():  # timed out: leave nothing running
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    summaries = []
    for i, path in sorted(final.items()):
        p = Path(path)
        summaries.append(json.loads(p.read_text()) if p.is_file() else
                         {"error": p.with_suffix(".err").read_text() if p.with_suffix(".err").is_file() else "?"})
    try:
        health = study_health(optuna.load_study(study_name=study, storage=open_storage(url)), n)
    except KeyError:
        raise RuntimeError(f"no worker created study {study!r} on {url} (timed out: {bool(procs)}); "
                           f"their summaries: {summaries}") from None
    totals = {s.get("trials") for s in summaries}
    hvs = {round(s.get("hypervolume", -1), 9) for s in summaries}
    agree = len(summaries) == len(methods) and len(totals) == 1 and len(hvs) == 1
    ok = (health["complete"] == n and health["running"] == 0 and health["waiting"] == 0
          and health["duplicate_numbers"] == 0 and agree and not procs)
    return {"ok": ok, "health": health, "kills": kills, "summaries": summaries, "agree": agree,
            "wall_s": wall, "trials_per_s": n / wall, "timed_out": bool(procs),
            "evaluated": sum(s.get("evaluated_here", 0) for s in summaries)}


def storages(pg_url: str | None, work: Path) -> dict:
    """Factories of fresh storage URLs per kind."""
    out = {"journal": lambda k: f"journal:{work / f'{k}.log'}",
           "sqlite": lambda k: f"sqlite:///{work / f'{k}.db'}"}
    if pg_url:
        out["postgresql"] = lambda k: pg_url(k)
    return out


def fault_matrix(urls: dict, n: int, quick: bool, batch: int = 8) -> list[dict]:
    """storage x controller x fault -> lost / duplicated / stuck."""
    rows = []
    for kind, make in urls.items():
        if quick:  # one fleet per storage: three faults on three workers
            plans = [({0: "open", 1: "claimed", 3: "reference"}, "open+claimed+reference")]
        else:
            plans = [({i: f}, f) for f in FAULTS for i in range(len(METHODS))]
        for k, (faults, label) in enumerate(plans):
            r = fleet(make(f"m{k}"), n, faults=faults, seed=k, batch=batch)
            h = r["health"]
            rows.append({"storage": kind, "controller": "+".join(METHODS[i] for i in faults),
                         "fault": label, "kills": len(r["kills"]), "lost": h["lost"],
                         "duplicated": h["duplicate_numbers"] + h["extra"] + h["duplicate_references"],
                         "stuck": h["running"] + h["waiting"], "failed_trials": h["fail"],
                         "pruned": h["pruned"], "agree": r["agree"], "ok": r["ok"],
                         "wall_s": round(r["wall_s"], 2)})
    return rows


def in_memory_rate(n: int, batch: int = 8) -> float:
    """Trials/s of one in-process NSGA-II sweep without a storage: the same run's baseline."""
    from search.accuracy import get_accuracy
    from search.latency import PredictedLatency
    from search.sweep import SweepConfig, run_sweep

    cfg = SweepConfig(trials=n, seed=0, batch=batch, sampler="nsga2", latency_target_ms=TARGET_MS,
                      out_dir=tempfile.mkdtemp(prefix="mnas-mem-"))
    predictor = predictor_dir()
    read, write = os.pipe()
    pid = os.fork()  # in a forked child like the fleets' workers: xgboost never runs here
    if pid == 0:
        os.close(read)
        code = 1
        try:
            acc, lat = get_accuracy("anb"), PredictedLatency("cpu-litert", "anb", predictor)
            t0 = time.perf_counter()
            run_sweep(cfg, acc, lat, progress=False)
            os.write(write, repr(n / (time.perf_counter() - t0)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if not out:
        raise RuntimeError(f"the in-memory baseline sweep failed (status {status})")
    return float(out)


def throughput(urls: dict, n: int, workers=(1, 4)) -> list[dict]:
    """Trials/s per storage and worker count; every worker runs NSGA-II (the storage is what
    differs, not the controller), beside an in-memory sweep of the same run (ratio)."""
    base = in_memory_rate(n)
    rows = [{"storage": "in memory (baseline)", "workers": 1, "trials": n, "wall_s": round(n / base, 2),
             "trials_per_s": round(base, 1), "vs_in_memory": 1.0, "ok": True}]
    for kind, make in urls.items():
        for w in workers:
            r = fleet(make(f"t{w}"), n, methods=("nsga2",) * w)
            rows.append({"storage": kind, "workers": w, "trials": n, "wall_s": round(r["wall_s"], 2),
                         "trials_per_s": round(r["trials_per_s"], 1),
                         "vs_in_memory": round(r["trials_per_s"] / base, 3), "ok": r["ok"],
                         "health": r["health"], "agree": r["agree"],
                         "errors": [x["error"] for x in r["summaries"] if "error" in x]})
    return rows


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--pg-url", default=None, help="a PostgreSQL server URL (a fresh database per run is made)")
    p.add_argument("--only", choices=("throughput", "faults"), default=None)
    p.add_argument("--no-postgres", action="store_true", help="journal and sqlite only")
    p.add_argument("--storages", default=None, help="comma-separated subset: journal,sqlite,postgresql")
    p.add_argument("--trials", type=int, default=None)
    p.add_argument("--json-out", default=None, help="also write the raw result here (tests)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    import search.sweep  # noqa: F401 - the imports forked workers share
    import search.accuracy, search.latency, search.controllers  # noqa: E401,F401

    work = Path(tempfile.mkdtemp(prefix="mnas-scale-"))
    server = None
    pg = None
    if not args.no_postgres:
        from pgserver import PgServer, unavailable

        if args.pg_url:
            pg = args.pg_url
        elif unavailable() is None:
            server = PgServer(durable=True)
            pg = server.url()
    try:
        pg_make = None
        if pg:
            from pgserver import new_database_at

            pg_make = lambda k: new_database_at(pg, f"b_{os.getpid()}_{k}")  # noqa: E731
        urls = storages(pg_make, work)
        if args.storages:
            urls = {k: v for k, v in urls.items() if k in args.storages.split(",")}
        res = {"storages": list(urls)}
        if args.only in (None, "throughput"):
            res["throughput"] = throughput(urls, args.trials or (200 if args.quick else 1000))
        if args.only in (None, "faults"):
            res["faults"] = fault_matrix(urls, args.trials or (120 if args.quick else 200), args.quick,
                                         batch=4 if args.quick else 8)
    finally:
        if server is not None:
            server.stop()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res))
    md = [f"# Sweeps at scale ({'quick' if args.quick else 'full'})", ""]
    if "throughput" in res:
        md += ["## Throughput (anb, shipped surrogates, batch 8)", "",
               md_table(["storage", "workers", "trials", "wall_s", "trials_per_s", "vs_in_memory", "ok"],
                        [[r[k] for k in ("storage", "workers", "trials", "wall_s", "trials_per_s",
                                         "vs_in_memory", "ok")]
                         for r in res["throughput"]]), ""]
    if "faults" in res:
        cols = ["storage", "controller", "fault", "kills", "lost", "duplicated", "stuck",
                "failed_trials", "pruned", "agree", "ok"]
        md += ["## Fault matrix (SIGKILL, then restart)", "",
               md_table(cols, [[r[k] for k in cols] for r in res["faults"]]), ""]
    write_results("sweep_scale_quick" if args.quick else "sweep_scale", res, "\n".join(md), out=args.out,
                  seeds=args.seed, config={"quick": args.quick, "trials": args.trials})
    ok = all(r["ok"] for r in res.get("faults", []) + res.get("throughput", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
