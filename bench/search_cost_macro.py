"""Search cost with a known answer: NAS-Bench-Macro accuracy x measured latency.

The exact Pareto front of (accuracy, latency) over all 3,969 distinct networks is
known from the benchmark's accuracies and our end-to-end timings of every network
(``<profile>/nasbench-macro_models.csv``). Each method (NSGA-II, TPE, random via
Optuna; PPO, regularised evolution, random via controllers) searches with latency
either *measured* (one device timing per new network) or *predicted* by a surrogate
(a TableSum over the operator table, calibrated on K timed networks), for 5+
seeds. Reported: hypervolume (of the true objectives of the networks evaluated)
against evaluations, and the evaluations and device measurements needed to reach
95% and 99% of the true hypervolume (medians over seeds).

    python bench/search_cost_macro.py --profile cpu-onnxruntime --trials 1000 --seeds 5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from space import format_arch  # noqa: E402
from space.spaces import get_space  # noqa: E402
from search.accuracy import get_accuracy  # noqa: E402
from search.controllers import make_controller  # noqa: E402
from search.latency import MeasuredLatency  # noqa: E402
from search.pareto import hypervolume_2d, hypervolume_history  # noqa: E402
from search.sweep import SweepConfig, run_sweep  # noqa: E402
from surrogate.predict.estimators import TableSum  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402
from surrogate.tables import write_json_atomic  # noqa: E402

METHODS = (("nsga2", None), ("tpe", None), ("random", None), (None, "ppo"), (None, "evolution"))


class SurrogateLatency:
    """TableSum over the operator table, calibrated on ``k`` timed networks."""

    def __init__(self, table: OpTable, measured: MeasuredLatency, k: int, seed: int):
        sp = get_space("nasbench-macro")
        rng = np.random.default_rng(1000 + seed)
        idx = sp.sample_indices(rng, k)
        self.model = TableSum("nasbench-macro", table, calibrate=True).fit(idx, measured.batch(idx))
        self.device_measurements = len(table) + k
        self.n_evaluated = 0

    def batch(self, idx):
        self.n_evaluated += len(idx)
        return self.model.predict(np.asarray(idx, dtype=np.int64))

    def describe(self):
        return {"kind": "surrogate"}


def run_one(method, seed: int, trials: int, mode: str, acc, measured, table, k_cal: int, out: Path):
    sampler, ctrl_name = method
    sp = get_space("nasbench-macro")
    lat = measured if mode == "measured" else SurrogateLatency(table, measured, k_cal, seed)
    ctrl = make_controller(ctrl_name, sp, seed=seed) if ctrl_name else None
    cfg = SweepConfig(space="nasbench-macro", profile=measured.profile, accuracy="macro",
                      sampler=sampler or "random", controller=ctrl_name, trials=trials, seed=seed,
                      batch=8, seed_reference=False, latency_target_ms=None,
                      out_dir=str(out / f"{sampler or ctrl_name}-{mode}-{seed}"))
    t0 = time.perf_counter()
    res = run_sweep(cfg, acc, lat, progress=False, controller=ctrl)
    import csv

    rows = list(csv.DictReader(open(res.files["trials"])))
    rows.sort(key=lambda r: int(r["trial"]))
    archs = [r["arch"] for r in rows]
    # true objectives of what was evaluated, in order
    true_lat = np.array([measured.table[a] for a in archs])
    true_acc = np.array([float(r["accuracy"]) for r in rows])
    distinct = np.array([len(set(archs[: i + 1])) for i in range(len(archs))])
    return true_lat, true_acc, distinct, time.perf_counter() - t0, getattr(lat, "device_measurements", None)


def first_reaching(hv: np.ndarray, level: float) -> int | None:
    hit = np.flatnonzero(hv >= level)
    return int(hit[0]) + 1 if hit.size else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-onnxruntime")
    ap.add_argument("--data", default=None)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--k-cal", type=int, default=10, help="timed networks to calibrate the surrogate")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--work", default="/tmp/mnas_search_cost")
    args = ap.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    sp = get_space("nasbench-macro")
    acc = get_accuracy("macro", data=args.data)
    measured = MeasuredLatency(args.profile, "nasbench-macro")
    table = OpTable.shipped(args.profile, "nasbench-macro")
    allidx = np.array(list(sp.enumerate()))
    keys = [format_arch(sp.to_arch(i)) for i in allidx]
    missing = [k for k in keys if k not in measured.table]
    if missing:
        raise SystemExit(f"{len(missing)} networks lack a measured latency; measure them all first")
    all_lat = np.array([measured.table[k] for k in keys])
    all_acc = acc.batch(allidx)
    ref = {"latency_ms": float(all_lat.max()), "accuracy": float(all_acc.min())}
    true_hv = hypervolume_2d(all_lat, all_acc, ref_latency=ref["latency_ms"], ref_accuracy=ref["accuracy"])
    results = {"profile": args.profile, "trials": args.trials, "seeds": args.seeds, "k_cal": args.k_cal,
               "reference_point": ref, "true_hypervolume": true_hv, "n_networks": len(keys),
               "op_table_rows": len(table), "methods": {}}
    for method in METHODS:
        name = method[0] or method[1]
        for mode in ("measured", "surrogate"):
            per_seed = []
            for seed in range(args.seeds):
                tl, ta, distinct, wall, dev = run_one(method, seed, args.trials, mode, acc, measured,
                                                     table, args.k_cal, work)
                hv = hypervolume_history(tl, ta, ref_latency=ref["latency_ms"],
                                         ref_accuracy=ref["accuracy"]) / true_hv
                e95, e99 = first_reaching(hv, 0.95), first_reaching(hv, 0.99)
                def devices(e):
                    if e is None:
                        return None
                    return int(distinct[e - 1]) if mode == "measured" else int(dev)
                per_seed.append({"seed": seed, "final_hv_ratio": float(hv[-1]), "evals_95": e95,
                                 "evals_99": e99, "device_95": devices(e95), "device_99": devices(e99),
                                 "wall_s": wall, "hv_curve": hv[:: max(1, len(hv) // 100)].tolist()})
                print(f"{name:>9} {mode:>9} seed {seed}: final HV {hv[-1]:.4f}, 95% at {e95}, 99% at {e99}",
                      flush=True)

            def med(key):
                vals = [s[key] for s in per_seed]
                if any(v is None for v in vals):
                    n_none = sum(v is None for v in vals)
                    vals = [v for v in vals if v is not None]
                    return {"median": float(np.median(vals)) if vals else None, "not_reached": n_none}
                return {"median": float(np.median(vals)), "not_reached": 0}
            results["methods"][f"{name}/{mode}"] = {
                "final_hv_ratio": med("final_hv_ratio"), "evals_95": med("evals_95"),
                "evals_99": med("evals_99"), "device_95": med("device_95"), "device_99": med("device_99"),
                "seeds": per_seed}
    write_json_atomic(out / "search_cost_macro.json", results)
    lines = [f"NAS-Bench-Macro x {args.profile} latency: true front over {len(keys)} networks, "
             f"HV reference point (latency {ref['latency_ms']:.3f} ms, accuracy {ref['accuracy']:.4f}); "
             f"{args.trials} trials, {args.seeds} seeds, medians. Surrogate = TableSum over "
             f"{len(table)} measured operators calibrated on {args.k_cal} timed networks.", "",
             "| method / latency | final HV ratio | evals to 95% | device timings to 95% | evals to 99% | device timings to 99% |",
             "|---|---|---|---|---|---|"]

    def fmt(d):
        if d["median"] is None:
            return "not reached"
        s = f"{d['median']:.0f}" if d["median"] >= 2 else f"{d['median']:.4f}"
        return s + (f" ({d['not_reached']} seeds not reached)" if d["not_reached"] else "")
    for k, v in results["methods"].items():
        lines.append(f"| {k} | {fmt(v['final_hv_ratio'])} | {fmt(v['evals_95'])} | {fmt(v['device_95'])} | "
                     f"{fmt(v['evals_99'])} | {fmt(v['device_99'])} |")
    lines.append("")
    lines.append("MnasNet sampled about 8,000 models, each timed on a phone.")
    md = "\n".join(lines)
    (out / "search_cost_macro.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
