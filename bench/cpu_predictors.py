"""Latency predictors on this machine's measured tables.

For each space: the end-to-end table is split by :func:`surrogate.predict.workflow.is_test`
(about 20% held out). Candidate models are compared by 5-fold cross-validation on
the training rows only; the best by CV MAPE becomes the default. Every candidate and
the FlopsLinear / TableSum baselines are then scored once on the held-out rows, and
compared with the repeatability noise (``bench/repeatability.py``). The operator-level
model is validated on held-out operators of the op table.

    python bench/cpu_predictors.py --profile cpu-litert --space anb --space mnasnet [--ship] [--normalised]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from space.spaces import get_space  # noqa: E402
from surrogate.predict.features import as_indices  # noqa: E402
from surrogate.predict.metrics import latency_metrics, plot_predicted_vs_measured  # noqa: E402
from surrogate.predict.oplevel import OpLevelModel, row_to_config  # noqa: E402
from surrogate.predict.optable import OpTable  # noqa: E402
from surrogate.predict.selection import cv_mape as selection_cv_mape  # noqa: E402
from surrogate.predict.workflow import (default_predictor_dir, load_timings, make_predictor,  # noqa: E402
                                        split)
from surrogate.atomic import write_json_atomic  # noqa: E402
from surrogate.tables import Table  # noqa: E402

CANDIDATES = ("xgb", "xgb-l1", "mlp", "ridge", "huber", "residual-xgb", "residual-xgb-l1",
              "residual-ridge", "residual-huber", "residual-mlp", "table-sum-cal")
BASELINES = ("flops-linear", "table-sum", "table-sum-cal")


def cv_mape(name: str, space: str, table, archs, y, folds: int = 5, seed: int = 0) -> float:
    """5-fold CV MAPE of predictor ``name`` (:func:`surrogate.predict.selection.cv_mape`)."""
    return selection_cv_mape(lambda: make_predictor(name, space, table), archs, y, folds=folds,
                             seed=seed, space=space)


def op_level_validation(profile: str, space: str, root=None, seed: int = 0) -> dict | None:
    from surrogate.tables import table_path

    path = table_path(profile, space, "ops", root)
    if not path.is_file():
        return None
    rows = Table.ops(path).read()
    rng = np.random.default_rng(seed)
    test = rng.random(len(rows)) < 0.2
    configs = [row_to_config(r) for r in rows]
    y = np.array([r["median_ms"] for r in rows])
    m = OpLevelModel().fit([c for c, t in zip(configs, test) if not t], y[~test])
    res = latency_metrics(y[test], m.predict([c for c, t in zip(configs, test) if t]))
    res["train_ops"] = int((~test).sum())
    return res


def add_noise(res: dict, out: Path) -> None:
    """The timings' own repeatability beside the chosen model's error (if measured)."""
    noise_p = out / f"repeatability_{res['profile']}_{res['space']}_repeat.json"
    if noise_p.is_file():
        doc = json.loads(noise_p.read_text())
        noise = (doc.get("results") or doc)["latency"]  # bench/common.write_results wraps it
        res["noise"] = noise
        res["noise_mean_abs_rel_diff"] = noise["mean_abs_rel_diff"]
        res["mape_over_noise"] = res["test"][res["chosen"]]["mape"] / noise["mean_abs_rel_diff"]


def run_space(profile: str, space: str, root, out: Path, ship: bool, normalise: bool = False) -> dict:
    """Select, fit and score every candidate on one space's table.

    ``normalise``: timings divided by their chunk's reference-operator time (host drift
    taken out; see :func:`load_timings`) for fitting and scoring alike (main never ships it).
    """
    archs, y = load_timings(profile, space, root, normalise=normalise)
    tr_a, tr_y, te_a, te_y = split(archs, y)
    # index vectors once: an architecture string costs a search of the space in every fit/predict
    sp = get_space(space)
    tr_a, te_a = as_indices(sp, tr_a), as_indices(sp, te_a)
    table = OpTable.shipped(profile, space, root)
    res: dict = {"profile": profile, "space": space, "train_rows": len(tr_a), "test_rows": len(te_a),
                 "timings": "reference-normalised" if normalise else "raw",
                 "op_table_rows": len(table), "cv_mape": {}, "test": {}, "fit_s": {}}
    for name in CANDIDATES:
        res["cv_mape"][name] = cv_mape(name, space, table, tr_a, tr_y)
    best = min(res["cv_mape"], key=res["cv_mape"].get)
    res["chosen"] = best
    preds = {}
    for name in dict.fromkeys(CANDIDATES + BASELINES):
        t0 = time.perf_counter()
        est = make_predictor(name, space, table).fit(tr_a, tr_y)
        res["fit_s"][name] = time.perf_counter() - t0
        preds[name] = est.predict(te_a)
        res["test"][name] = latency_metrics(te_y, preds[name])
        if ship and name == best:
            from surrogate.predict.persist import save_predictor

            save_predictor(est, default_predictor_dir(profile, space), profile=profile,
                           extra={"train": {"train_rows": len(tr_a), "model": name,
                                            "cv_mape": res["cv_mape"][name],
                                            "selection": "lowest 5-fold CV MAPE on the training rows"}})
    cal = res["test"]["table-sum-cal"]["mape"]
    res["learned_over_calibrated_tablesum_mape"] = res["test"][best]["mape"] / cal if cal > 0 else None
    learned = min((n for n in CANDIDATES if n != "table-sum-cal"), key=lambda n: res["cv_mape"][n])
    res["best_learned"] = learned
    res["best_learned_over_calibrated_tablesum_mape"] = res["test"][learned]["mape"] / cal if cal > 0 else None
    # the held-out residuals beside the timings' own repeatability (same networks timed twice)
    rel = np.abs(preds[best] / te_y - 1)
    res["residual_percentiles"] = {str(q): float(np.percentile(rel, q)) for q in (50, 75, 90, 95, 99)}
    if not normalise:
        add_noise(res, out)
    if normalise:
        return res
    res["op_level"] = op_level_validation(profile, space, root)
    res["plot"] = plot_predicted_vs_measured(
        te_y, {best: preds[best], "table-sum": preds["table-sum"], "flops-linear": preds["flops-linear"]},
        out / f"cpu_predictors_{profile}_{space}.png", title=f"{profile} / {space}, held-out rows")
    return res


def to_markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        how = (", timings divided by their chunk's reference-operator time (drift taken out)"
               if r.get("timings") == "reference-normalised" else "")
        lines.append(f"### {r['profile']} / {r['space']} ({r['train_rows']} train, {r['test_rows']} held out{how})")
        lines.append("")
        lines.append("| predictor | CV MAPE | ±5% | ±10% | MAPE | RMSE ms | Kendall | Spearman |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, m in r["test"].items():
            cv = r["cv_mape"].get(name)
            tag = " **(chosen)**" if name == r["chosen"] else ""
            lines.append(f"| {name}{tag} | {'' if cv is None else f'{100 * cv:.2f}%'} | "
                         f"{100 * m['within_5pct']:.1f}% | {100 * m['within_10pct']:.1f}% | "
                         f"{100 * m['mape']:.2f}% | {m['rmse_ms']:.3f} | {m['kendall_tau']:.3f} | "
                         f"{m['spearman']:.3f} |")
        if r.get("learned_over_calibrated_tablesum_mape") is not None:
            lines.append("")
            lines.append(f"Chosen ({r['chosen']}) MAPE / calibrated TableSum MAPE = "
                         f"{r['learned_over_calibrated_tablesum_mape']:.2f}; best learned by CV "
                         f"({r['best_learned']}): {r['best_learned_over_calibrated_tablesum_mape']:.2f} "
                         f"(target <= 0.8).")
        if "residual_percentiles" in r:
            q = r["residual_percentiles"]
            lines.append("")
            lines.append("Held-out |predicted / measured - 1| of the chosen model, percentiles 50/75/90/95/99: "
                         + " / ".join(f"{100 * q[k]:.2f}%" for k in ("50", "75", "90", "95", "99")) + ".")
        if "mape_over_noise" in r:
            nz = r["noise"]
            lines.append(f"The same networks timed twice (separate process, later; "
                         f"`repeatability_{r['profile']}_{r['space']}_repeat`): median |diff| "
                         f"{100 * nz['median_abs_rel_diff']:.2f}%, p95 {100 * nz['p95_abs_rel_diff']:.2f}%, "
                         f"mean {100 * nz['mean_abs_rel_diff']:.2f}%; chosen MAPE / mean |diff| = "
                         f"{r['mape_over_noise']:.2f}.")
        if r.get("op_level"):
            o = r["op_level"]
            lines.append("")
            lines.append(f"Operator-level model on {o['n']} held-out operators ({o['train_ops']} for "
                         f"fitting): MAPE {100 * o['mape']:.2f}%, ±10% {100 * o['within_10pct']:.1f}%, "
                         f"Kendall {o['kendall_tau']:.3f}.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-litert")
    ap.add_argument("--space", action="append", default=None)
    ap.add_argument("--tables", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--ship", action="store_true", help="save the chosen model as the shipped default")
    ap.add_argument("--normalised", action="store_true",
                    help="also fit and score on reference-normalised timings (drift taken out)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other spaces' results of the existing JSON (refit some spaces only)")
    ap.add_argument("--render-only", action="store_true",
                    help="re-read the JSON results, add the repeatability figures, rewrite the Markdown")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"cpu_predictors_{args.profile}"
    if args.render_only:
        results = json.loads((out / f"{name}.json").read_text())
        for r in results:
            if r.get("timings") != "reference-normalised":
                add_noise(r, out)
        write_json_atomic(out / f"{name}.json", results)
        (out / f"{name}.md").write_text(to_markdown(results))
        print(to_markdown(results))
        return 0
    results = []
    for s in args.space or ["anb", "mnasnet"]:
        results.append(run_space(args.profile, s, args.tables, out, args.ship))
        if args.normalised:
            results.append(run_space(args.profile, s, args.tables, out, False, normalise=True))
    if args.merge and (out / f"{name}.json").is_file():
        done = {(r["space"], r.get("timings")) for r in results}
        kept = [r for r in json.loads((out / f"{name}.json").read_text())
                if (r["space"], r.get("timings")) not in done]
        results = kept + results
    write_json_atomic(out / f"{name}.json", results)
    md = to_markdown(results)
    (out / f"{name}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
