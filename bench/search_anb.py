"""Search methods on the ImageNet-scale Accel-NASBench space, on the shipped surrogates.

Accuracy: the shipped anb XGBoost surrogate (``search/data/anb_accuracy.json``);
latency: the shipped cpu-litert anb predictor. Each method runs ``--trials`` trials
through :func:`search.sweep.run_sweep` (in-memory Optuna study, no reference
networks enqueued) for ``--seeds`` seeds: NSGA-II, TPE and random as Optuna
samplers; random, regularised evolution, the MnasNet PPO controller and the relaxed
gradient search (:mod:`search.controllers.gradient`) as controllers. Reported: the 2-D
hypervolume of the (latency, accuracy) front of the trials so far at each checkpoint
(median over seeds), its ratio to the hypervolume of the union of every run's
trials (the best front known to this benchmark), and the sweep loop's trials per
second (``SweepResult.trials_per_s``, median over seeds).

Reference point: latency ``2 T`` and accuracy ``--ref-accuracy`` (0.5), with ``T`` the
sweeps' default target (median predicted latency of 1,000 random members, seed 0).
The gradient search's accuracy MLP is distilled once from the XGBoost surrogate
(timed and reported, with its Kendall tau on held-out random members) and shared
by its seeds.

    python bench/search_anb.py --trials 1000 --seeds 5
    python bench/search_anb.py --quick   # seconds: a smoke test
"""
from __future__ import annotations

import csv
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import base_parser, fmt, limit_threads, md_table, write_results  # noqa: E402

METHODS = {"nsga2": ("nsga2", None), "tpe": ("tpe", None), "random": ("random", None),
           "random-ctrl": (None, "random"), "evolution": (None, "evolution"), "ppo": (None, "ppo"),
           "gradient": (None, "gradient")}
CHECKPOINTS = (50, 100, 200, 500, 1000)


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {', '.join(METHODS)}")
    p.add_argument("--ref-accuracy", type=float, default=0.5)
    p.add_argument("--work", default=None, help="folder for the sweeps' files (default: a temp dir)")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.seeds = min(args.trials, 24), min(args.seeds, 2)
        if args.methods == ",".join(METHODS):
            args.methods = "random,evolution,gradient"
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        p.error(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    if args.trials < 1 or args.seeds < 1:
        p.error("--trials and --seeds must be >= 1")
    return args


def _trials_in_order(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["trial"]))
    return (np.array([float(r["latency_ms"]) for r in rows]),
            np.array([float(r["accuracy"]) for r in rows]))


def run_one(method: str, seed: int, trials: int, work: Path, accuracy_model) -> dict:
    """One sweep; returns the trials' objectives in order, its rate and CPU time."""
    from search.accuracy import get_accuracy
    from search.controllers import make_controller
    from search.latency import PredictedLatency
    from search.sweep import SweepConfig, run_sweep
    from space.spaces import get_space

    sampler, ctrl_name = METHODS[method]
    acc = get_accuracy("anb")  # fresh: no accuracy cache carried between runs
    lat = PredictedLatency("cpu-litert", "anb")
    ctrl = None
    if ctrl_name == "gradient":
        ctrl = make_controller("gradient", get_space("anb"), seed=seed, latency=lat,
                               accuracy_model=accuracy_model, horizon=trials)
    elif ctrl_name:
        ctrl = make_controller(ctrl_name, get_space("anb"), seed=seed)
    out = work / f"{method}-{seed}"
    if out.exists():  # a stale controller checkpoint there would be resumed
        import shutil

        shutil.rmtree(out)
    cfg = SweepConfig(space="anb", profile="cpu-litert", accuracy="anb",
                      sampler=sampler or "random", controller=ctrl_name, trials=trials, seed=seed,
                      batch=8, seed_reference=False, out_dir=str(out),
                      study_name=f"{method}-{seed}")
    c0 = time.process_time()
    res = run_sweep(cfg, acc, lat, progress=False, controller=ctrl)
    cpu = time.process_time() - c0
    lat_ms, accs = _trials_in_order(res.files["trials"])
    return {"latency_ms": lat_ms, "accuracy": accs, "trials_per_s": res.trials_per_s,
            "wall_s": res.wall_s, "cpu_s": cpu, "target_ms": res.latency_target_ms}


def main(argv=None) -> dict:
    import tempfile

    from search.pareto import hypervolume_2d, hypervolume_history
    from search.sweep import default_target

    args = parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mnas_search_anb."))
    checkpoints = [c for c in CHECKPOINTS if c < args.trials] + [args.trials]
    from search.accuracy import get_accuracy
    from search.latency import PredictedLatency
    from space.spaces import get_space

    lat0 = PredictedLatency("cpu-litert", "anb")
    target = default_target(lat0, get_space("anb"))
    ref = {"latency_ms": 2.0 * target, "accuracy": float(args.ref_accuracy)}
    distilled, distill_info = None, None
    if "gradient" in args.methods:
        from surrogate.predict.distill import distill_accuracy

        kw = {"n": 2000, "heldout": 500, "epochs": 5} if args.quick else {}
        c0 = time.process_time()
        distilled, distill_info = distill_accuracy(get_accuracy("anb"), seed=args.seed, **kw)
        distill_info["cpu_s"] = round(time.process_time() - c0, 3)
        print(f"distilled accuracy MLP: Kendall tau {distill_info['kendall_tau']:.4f}, R^2 "
              f"{distill_info['r2']:.4f} on {distill_info['heldout']} held-out random members "
              f"({distill_info['cpu_s']:.1f} s CPU)", flush=True)
    runs: dict[str, list[dict]] = {}
    for method in args.methods:
        runs[method] = []
        for s in range(args.seeds):
            seed = args.seed + s
            r = run_one(method, seed, args.trials, work, distilled)
            hv = hypervolume_history(r["latency_ms"], r["accuracy"], ref_latency=ref["latency_ms"],
                                     ref_accuracy=ref["accuracy"])
            r["hv"] = {c: float(hv[min(c, len(hv)) - 1]) for c in checkpoints}
            r["seed"] = seed
            runs[method].append(r)
            print(f"{method:>11} seed {seed}: HV@{args.trials} {r['hv'][args.trials]:.4f}, "
                  f"{r['trials_per_s']:.1f} trials/s ({r['cpu_s']:.1f} s CPU)", flush=True)
    # the best front known to the benchmark: every trial of every run
    all_lat = np.concatenate([r["latency_ms"] for rs in runs.values() for r in rs])
    all_acc = np.concatenate([r["accuracy"] for rs in runs.values() for r in rs])
    hv_union = hypervolume_2d(all_lat, all_acc, ref_latency=ref["latency_ms"],
                              ref_accuracy=ref["accuracy"])
    results: dict = {"space": "anb", "accuracy": "anb (shipped XGBoost surrogate)",
                     "latency": "cpu-litert anb (shipped predictor)", "trials": args.trials,
                     "seeds": args.seeds, "checkpoints": checkpoints, "target_ms": target,
                     "reference_point": ref, "hv_union": hv_union,
                     "distilled_accuracy_mlp": distill_info, "methods": {}}
    rows = []
    for method, rs in runs.items():
        med = {c: float(np.median([r["hv"][c] for r in rs])) for c in checkpoints}
        tps = float(np.median([r["trials_per_s"] for r in rs]))
        results["methods"][method] = {
            "sampler_or_controller": METHODS[method][0] or f"controller {METHODS[method][1]}",
            "hv_median": med, "hv_ratio_median": {c: v / hv_union for c, v in med.items()},
            "trials_per_s_median": tps,
            "seeds": [{"seed": r["seed"], "hv": r["hv"], "trials_per_s": r["trials_per_s"],
                       "wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in rs]}
        rows.append([method] + [f"{med[c]:.3f} ({med[c] / hv_union:.3f})" for c in checkpoints]
                    + [fmt(tps, "rate") if tps >= 10 else f"{tps:.1f}"])
    headers = ["method"] + [f"HV @{c}" for c in checkpoints] + ["trials/s"]
    lines = [
        "# Search methods on the Accel-NASBench space (shipped surrogates)", "",
        f"Accuracy: shipped anb XGBoost surrogate; latency: shipped cpu-litert anb predictor. "
        f"{args.trials} trials per run, {args.seeds} seeds, medians over seeds. Hypervolume of the "
        f"(latency min, accuracy max) front of the trials so far, reference point latency "
        f"{ref['latency_ms']:.2f} ms (2 T, T = {target:.2f} ms) and accuracy {ref['accuracy']:.2f}; "
        f"in brackets the ratio to the hypervolume of all runs' trials together "
        f"({hv_union:.3f}). trials/s: the sweep loop (`SweepResult.trials_per_s`), median over "
        f"seeds, on a shared 2-core machine (one core, niced).", "",
        md_table(headers, rows), ""]
    if distill_info:
        lines.append(f"gradient: Gumbel-softmax (straight-through) search on a torch MLP distilled "
                     f"from the XGBoost surrogate ({distill_info['samples']:,} random members, "
                     f"{distill_info['cpu_s']:.1f} s CPU once, not in trials/s): Kendall tau "
                     f"{distill_info['kendall_tau']:.3f}, R^2 {distill_info['r2']:.3f} against the "
                     f"surrogate on {distill_info['heldout']:,} held-out random members; latency "
                     f"is the shipped predictor's exact relaxed form. Its proposals are scored "
                     f"by the same XGBoost surrogate as every other method. Trials count "
                     f"evaluations through the study only: between two trials it takes Adam steps "
                     f"on the relaxed surrogates (at the defaults 5 steps x 16 Gumbel samples x 8 "
                     f"chains per 8 trials, 80 relaxed evaluations per trial), and the distillation "
                     f"queried the XGBoost surrogate {distill_info['samples'] + distill_info['heldout']:,} "
                     f"times once.")
    md = "\n".join(lines)
    cfg = {"trials": args.trials, "seeds": args.seeds, "methods": args.methods,
           "ref_accuracy": args.ref_accuracy, "quick": args.quick, "work": str(work)}
    write_results("search_anb", results, md, args.out,
                  seeds=[args.seed + s for s in range(args.seeds)], config=cfg, started=started)
    return results


if __name__ == "__main__":
    main()
