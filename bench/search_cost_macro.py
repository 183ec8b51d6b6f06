"""Search cost with a known answer: NAS-Bench-Macro accuracy x measured latency.

The exact Pareto front of (accuracy, latency) over all 3,969 distinct networks is
known from the benchmark's CIFAR-10 accuracies and our end-to-end timings of every
network (``data/latency_tables/<profile>/nasbench-macro_models.csv``). Each method
(NSGA-II, TPE, random as Optuna samplers; the MnasNet PPO controller and regularised
evolution as controllers, all through :func:`search.sweep.run_sweep`) searches for
``--seeds`` seeds with latency either

* ``measured``: one device timing per distinct network evaluated (what MnasNet did), or
* ``surrogate``: a TableSum over the operator table, calibrated on ``--k-cal`` timed
  networks; the device only times the operators, the calibration networks and, at
  the end, the networks on the *predicted* front (re-measured finalists).

Reported per method and mode (medians over seeds): the hypervolume ratio (to the true
front's) after N evaluations, and the evaluations and device timings needed to reach
95% and 99% of it. For ``surrogate`` two figures: ``oracle`` (the true objectives of
everything evaluated, an upper bound) and ``re-measured`` (the true objectives of the
predicted front only: what a user who re-times the finalists gets; device timings =
operators + calibration networks + that front). Hypervolume reference point: the true
front's nadir pushed out by 10% of the front's extent (``--ref worst``: the slowest
latency and lowest accuracy of all networks, which random sampling nearly fills at
once). A PNG shows median curves.

Resumable: each (method, mode, seed) run is stored in ``--work`` as JSON when done
and skipped on a rerun with the same settings.

    python bench/search_cost_macro.py --trials 1000 --seeds 5
    python bench/search_cost_macro.py --quick   # a smoke test
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import base_parser, data_dir, fmt, limit_threads, md_table, write_results  # noqa: E402

METHODS = {"nsga2": ("nsga2", None), "tpe": ("tpe", None), "random": ("random", None),
           "ppo": (None, "ppo"), "evolution": (None, "evolution")}
MODES = ("measured", "surrogate")


def parse_args(argv=None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu-onnxruntime",
                   help="profile whose nasbench-macro_models.csv holds all 3,969 timings")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--k-cal", type=int, default=10, help="timed networks calibrating the surrogate")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of {', '.join(METHODS)}")
    p.add_argument("--ref", choices=("nadir", "worst"), default="nadir",
                   help="HV reference point: the true front's nadir + 10%% of its extent, or the "
                        "slowest latency and lowest accuracy of all networks (lenient: random "
                        "sampling reaches 90%% of it in 40 trials)")
    p.add_argument("--work", default="/tmp/mnas_search_cost", help="per-run results (resume) and sweeps")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.seeds = min(args.trials, 40), min(args.seeds, 2)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        p.error(f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    if args.trials < 2 or args.seeds < 1 or args.k_cal < 2:
        p.error("--trials must be >= 2, --seeds >= 1 and --k-cal >= 2")
    return args


class SurrogateLatency:
    """TableSum over the operator table, calibrated on ``k`` timed networks."""

    def __init__(self, table, measured, k: int, seed: int):
        from space.spaces import get_space
        from surrogate.predict.estimators import TableSum

        sp = get_space("nasbench-macro")
        idx = sp.sample_indices(np.random.default_rng(1000 + seed), k)
        self.model = TableSum("nasbench-macro", table, calibrate=True).fit(idx, measured.batch(idx))
        self.device_measurements = len(table) + k

    def batch(self, idx):
        return self.model.predict(np.asarray(idx, dtype=np.int64))

    def describe(self):
        return {"kind": "surrogate", "model": "TableSum+calibration"}


def first_reaching(hv: np.ndarray, level: float) -> int | None:
    """1-based index of the first entry >= level (None: never)."""
    hit = np.flatnonzero(hv >= level - 1e-12)
    return int(hit[0]) + 1 if hit.size else None


def remeasured_history(pred_lat, true_lat, true_acc, ref) -> tuple[np.ndarray, np.ndarray]:
    """Per prefix: HV of the true objectives of the predicted front, and that front's size."""
    from search.pareto import hypervolume_2d, pareto_front

    n = len(pred_lat)
    hv, size = np.zeros(n), np.zeros(n, dtype=np.int64)
    for e in range(1, n + 1):
        f = pareto_front(pred_lat[:e], true_acc[:e], unique=True)
        size[e - 1] = len(f)
        hv[e - 1] = hypervolume_2d(true_lat[f], true_acc[f], ref_latency=ref[0], ref_accuracy=ref[1])
    return hv, size


def run_one(name: str, seed: int, mode: str, args, acc, measured, table, ref, true_hv) -> dict:
    from search.controllers import make_controller
    from search.pareto import hypervolume_history
    from search.sweep import SweepConfig, run_sweep
    from space.spaces import get_space

    sampler, ctrl_name = METHODS[name]
    sp = get_space("nasbench-macro")
    lat = measured if mode == "measured" else SurrogateLatency(table, measured, args.k_cal, seed)
    ctrl = make_controller(ctrl_name, sp, seed=seed) if ctrl_name else None
    out = Path(args.work) / "sweeps" / f"{name}-{mode}-{seed}"
    cfg = SweepConfig(space="nasbench-macro", profile=measured.profile, accuracy="macro",
                      sampler=sampler or "random", controller=ctrl_name, trials=args.trials, seed=seed,
                      batch=8, seed_reference=False, latency_target_ms=None, out_dir=str(out))
    t0 = time.perf_counter()
    res = run_sweep(cfg, acc, lat, progress=False, controller=ctrl)
    wall = time.perf_counter() - t0
    with open(res.files["trials"], newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["trial"]))
    archs = [r["arch"] for r in rows]
    true_lat = np.array([measured.table[a] for a in archs])
    true_acc = np.array([float(r["accuracy"]) for r in rows])
    pred_lat = np.array([float(r["latency_ms"]) for r in rows])
    first = np.zeros(len(archs), dtype=bool)  # where each network appears first
    first[np.unique(np.asarray(archs, dtype=object), return_index=True)[1]] = True
    distinct = np.cumsum(first)
    hv = hypervolume_history(true_lat, true_acc, ref_latency=ref[0], ref_accuracy=ref[1]) / true_hv
    rec = {"method": name, "mode": mode, "seed": seed, "wall_s": wall, "n": len(rows),
           "hv": hv.tolist(), "distinct": distinct.tolist()}
    if mode == "measured":
        rec["devices"] = distinct.tolist()  # every new network is timed once
    else:
        hv_r, size = remeasured_history(pred_lat, true_lat, true_acc, ref)
        rec["hv_remeasured"] = (hv_r / true_hv).tolist()
        rec["devices"] = (lat.device_measurements + size).tolist()
        rec["surrogate_kendall"] = _kendall(pred_lat, true_lat)
    return rec


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def summarise(recs: list[dict], trials: int) -> dict:
    """Medians over seeds of the final ratio and of evaluations/device timings to 95/99%."""
    out = {}
    for curve in ("hv", "hv_remeasured"):
        rs = [r for r in recs if curve in r]
        if not rs:
            continue
        per = []
        for r in rs:
            h = np.asarray(r[curve])
            d = {"final": float(h[-1])}
            for lvl in (95, 99):
                e = first_reaching(h, lvl / 100)
                d[f"evals_{lvl}"] = e
                if e is None:
                    d[f"device_{lvl}"] = None
                elif curve == "hv" and r["mode"] == "surrogate":
                    d[f"device_{lvl}"] = None  # oracle: needs every network's true latency
                else:
                    d[f"device_{lvl}"] = int(r["devices"][e - 1])
            per.append(d)

        def med(key):  # a seed that never reached the level counts as infinitely many
            vals = [np.inf if p[key] is None else p[key] for p in per]
            m = float(np.median(vals))
            return {"median": m if np.isfinite(m) else None,
                    "not_reached": sum(p[key] is None for p in per)}
        out[curve] = {k: med(k) for k in ("final", "evals_95", "device_95", "evals_99", "device_99")}
        out[curve]["curve_median"] = np.median(np.array([r[curve] for r in rs]), axis=0)[
            :: max(1, trials // 200)].tolist()
    out["wall_s_median"] = float(np.median([r["wall_s"] for r in recs]))
    if any("surrogate_kendall" in r for r in recs):
        out["surrogate_kendall_median"] = float(np.median([r["surrogate_kendall"] for r in recs
                                                          if "surrogate_kendall" in r]))
    return out


def plot(summary: dict, trials: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2, sharey=True)
    step = max(1, trials // 200)
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for ax, mode in zip(axes, MODES):
        for key, s in summary.items():
            name, m = key.split("/")
            if m != mode:
                continue
            for curve, style in (("hv", "-"), ("hv_remeasured", "--")):
                if curve in s:
                    y = s[curve]["curve_median"]
                    x = np.arange(1, len(y) * step + 1, step)[: len(y)]
                    label = name + (" (re-measured front)" if curve == "hv_remeasured" else "")
                    ax.plot(x, y, style, label=label, color=colours[name], lw=1.2)
        ax.axhline(0.95, color="grey", lw=0.6)
        ax.axhline(0.99, color="grey", lw=0.6)
        ax.set_xscale("log")
        ax.set_title(f"latency {mode}")
        ax.set_xlabel("evaluations")
        ax.set_ylim(0.6, 1.005)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("hypervolume / true front's")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    args = parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    from space.blockstring import format_arch
    from space.spaces import get_space
    from search.accuracy import get_accuracy
    from search.latency import MeasuredLatency
    from search.pareto import hypervolume_2d, pareto_front
    from surrogate.predict.optable import OpTable
    from surrogate.atomic import write_json_atomic

    sp = get_space("nasbench-macro")
    acc = get_accuracy("macro", data=str(data_dir(args.data)))
    measured = MeasuredLatency(args.profile, "nasbench-macro")
    table = OpTable.shipped(args.profile, "nasbench-macro")
    allidx = np.array(list(sp.enumerate()))
    keys = [format_arch(sp.to_arch(i)) for i in allidx]
    missing = [k for k in keys if k not in measured.table]
    if missing:
        raise SystemExit(f"{len(missing)} of {len(keys)} networks lack a {args.profile} timing; "
                         f"run: mnas measure models --profile {args.profile} --space nasbench-macro --all")
    all_lat = np.array([measured.table[k] for k in keys])
    all_acc = acc.batch(allidx)
    true_front = pareto_front(all_lat, all_acc, unique=True)
    if args.ref == "worst":
        ref = (float(all_lat.max()), float(all_acc.min()))
    else:  # the true front's nadir pushed out by 10% of its extent
        fl, fa = all_lat[true_front], all_acc[true_front]
        ref = (float(fl.max() + 0.1 * (fl.max() - fl.min())), float(fa.min() - 0.1 * (fa.max() - fa.min())))
    true_hv = hypervolume_2d(all_lat, all_acc, ref_latency=ref[0], ref_accuracy=ref[1])
    runs_dir = Path(args.work) / "runs"
    tag = f"t{args.trials}-k{args.k_cal}-{args.ref}-{args.profile}"
    recs: dict[str, list[dict]] = {}
    todo = [(m, mode, s) for m in args.methods for mode in MODES for s in range(args.seeds)]
    for i, (name, mode, seed) in enumerate(todo, 1):
        f = runs_dir / f"{tag}-{name}-{mode}-{seed}.json"
        if f.is_file():
            rec = json.loads(f.read_text())
            state = "resumed"
        else:
            rec = run_one(name, seed, mode, args, acc, measured, table, ref, true_hv)
            write_json_atomic(f, rec)
            state = f"{rec['wall_s']:.0f} s"
        recs.setdefault(f"{name}/{mode}", []).append(rec)
        extra = f", re-measured {rec['hv_remeasured'][-1]:.4f}" if "hv_remeasured" in rec else ""
        print(f"[{i}/{len(todo)}] {name:>9} {mode:>9} seed {seed}: HV ratio {rec['hv'][-1]:.4f}{extra} "
              f"({state})", flush=True)
    summary = {k: summarise(v, args.trials) for k, v in recs.items()}
    png = Path(args.out) / "search_cost_macro.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(summary, args.trials, png)

    def cell(d):
        if d["median"] is None:
            return f"not reached ({d['not_reached']}/{args.seeds})"
        s = f"{d['median']:.4f}" if d["median"] <= 1.0 else f"{d['median']:,.0f}"
        return s + (f" ({d['not_reached']}/{args.seeds} not reached)" if d["not_reached"] else "")
    rows = []
    for k, s in summary.items():
        for curve, label in (("hv", "all evaluated" if k.endswith("surrogate") else ""),
                             ("hv_remeasured", "re-measured front")):
            if curve not in s:
                continue
            c = s[curve]
            rows.append([k + (f" ({label})" if label else ""), cell(c["final"]), cell(c["evals_95"]),
                         cell(c["device_95"]) if c["device_95"]["median"] is not None or curve != "hv"
                         or k.endswith("measured") else "n/a (oracle)",
                         cell(c["evals_99"]),
                         cell(c["device_99"]) if c["device_99"]["median"] is not None or curve != "hv"
                         or k.endswith("measured") else "n/a (oracle)",
                         fmt(s["wall_s_median"], "s")])
    kend = [s.get("surrogate_kendall_median") for s in summary.values() if "surrogate_kendall_median" in s]
    md = (f"# Search cost with a known answer: NAS-Bench-Macro x {args.profile}\n\n"
          f"True front: {len(true_front)} of {len(keys)} networks; HV reference point "
          f"({ref[0]:.3f} ms, {ref[1]:.4f} accuracy; {args.ref}). {args.trials} trials per run, {args.seeds} seeds, "
          f"medians. Surrogate: TableSum over {len(table)} timed operators calibrated on {args.k_cal} "
          f"timed networks (Kendall tau vs measured over the evaluated networks: "
          f"{fmt(float(np.median(kend))) if kend else '-'}). Device timings for the surrogate = "
          f"{len(table)} operators + {args.k_cal} networks + the predicted front re-measured. "
          f"Evaluations and device timings to a level are medians over seeds, a seed that never "
          f"reached it counting as infinite. MnasNet timed about 8,000 models on a phone.\n\n"
          + md_table(["method / latency", "HV ratio at end", "evals to 95%", "device timings to 95%",
                      "evals to 99%", "device timings to 99%", "wall s/run"], rows)
          + f"\n\n![HV vs evaluations]({png.name})")
    results = {"profile": args.profile, "n_networks": len(keys), "true_front_size": int(len(true_front)),
               "reference_point": {"latency_ms": ref[0], "accuracy": ref[1]}, "true_hypervolume": true_hv,
               "op_table_rows": len(table), "methods": summary}
    write_results("search_cost_macro", results, md, args.out, seeds=list(range(args.seeds)),
                  config={k: v for k, v in vars(args).items()}, started=started)
    return results


if __name__ == "__main__":
    main()
