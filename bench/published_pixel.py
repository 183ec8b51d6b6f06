"""Published Pixel-1 timings from this machine's cpu-litert timings, calibrated per source.

Source: the MnasNet paper's Pixel 1 measurements (single big core, batch 1, TFLite;
Tables 1, 4 and 6 and the MobileNetV2 rows it reuses, all with the device string
"Google Pixel 1 (single-thread big CPU core, batch 1)" in
``reference/published_latency.csv``); rows whose network is in our registry. The
calibration ``log(pixel) = a * log(ours) + b`` is fitted on the other rows
(leave-one-out) and, separately, on 3 random rows predicting the rest. Our figure for
a network is its measured end-to-end cpu-litert latency
(``reference_models.csv``). The same is repeated from our *predictor*: operator
tables plus the operator-level model, with no timing of the networks themselves.

    python bench/published_pixel.py
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogate.predict.metrics import latency_metrics  # noqa: E402
from surrogate.tables import Table, table_path, tables_dir, write_json_atomic  # noqa: E402

DEVICE = "Google Pixel 1 (single-thread big CPU core, batch 1)"
#: published model name -> our registry name
NAMES = {
    "MnasNet-A1": "mnasnet-a1",
    "MnasNet-B1 (no SE in search space)": "mnasnet-b1",
    "MobileNetV2 1.0": "mobilenetv2-1.0",
    "MobileNetV2 1.4": "mobilenetv2-1.4",
    "MobileNetV2 (0.35x)": "mobilenetv2-0.35",
    "MnasNet-A1 (0.35x)": "mnasnet-a1-0.35",
    "MnasNet-search2 (22ms target)": "mnasnet-small",
    "MBConv3 (k3x3) only variant of A1": "mnasnet-a1-e3k3",
    "MBConv3 (k5x5) only variant of A1": "mnasnet-a1-e3k5",
    "MBConv6 (k3x3) only variant of A1": "mnasnet-a1-e6k3",
    "MBConv6 (k5x5) only variant of A1": "mnasnet-a1-e6k5",
}


def load_rows(csv_path: Path, ours: dict[str, float]) -> list[dict]:
    rows = []
    with csv_path.open() as f:
        for r in csv.DictReader(f):
            if r["device"] != DEVICE or r["model"] not in NAMES:
                continue
            name = NAMES[r["model"]]
            arch_key = ours.get(name)
            if arch_key is None:
                continue
            weak = "UNCERTAIN" in r["note"] or "DERIVED" in r["note"] or "secondary" in r["note"]
            rows.append({"model": r["model"], "ours": name, "pixel_ms": float(r["latency_ms"]),
                         "cpu_litert_ms": arch_key, "source": r["source"], "weaker_evidence": weak})
    return rows


def predicted_ms(names: list[str], root=None) -> tuple[dict[str, float], dict]:
    """Our *predicted* cpu-litert latency of reference networks, from operator tables only.

    Every measured cpu-litert operator table is pooled; an :class:`OpLevelModel` fitted on
    them predicts the operators no table has (other widths, resolutions, activations);
    a network's figure is the sum over its operators. No end-to-end timing is used.
    """
    from space.reference import REFERENCE
    from surrogate.predict.oplevel import OpLevelModel, row_to_config

    rows = []
    for path in sorted((tables_dir(root) / "cpu-litert").glob("*_ops.csv")):
        rows += Table.ops(path).read()
    lut = {r["op_key"]: r["median_ms"] for r in rows}
    model = OpLevelModel().fit([row_to_config(r) for r in rows], [r["median_ms"] for r in rows])
    out, n_ops, n_measured = {}, 0, 0
    for name in names:
        ops = [lc for lc in REFERENCE[name].ops() if not lc.is_identity]
        known = [lut.get(lc.key()) for lc in ops]
        unknown = [lc for lc, k in zip(ops, known) if k is None]
        pred = model.predict(unknown) if unknown else np.zeros(0)
        out[name] = float(sum(k for k in known if k is not None) + pred.sum())
        n_ops += len(ops)
        n_measured += len(ops) - len(unknown)
    return out, {"op_rows": len(rows), "ops": n_ops, "ops_measured": n_measured}


def fit_predict(x_tr, y_tr, x_te):
    a, b = np.polyfit(np.log(x_tr), np.log(y_tr), 1)
    return np.exp(a * np.log(x_te) + b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", default=str(ROOT.parent / "shared" / "reference" / "published_latency.csv"))
    ap.add_argument("--tables", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    ref_table = table_path("cpu-litert", "reference", "models", args.tables)
    ours = {}
    for r in Table.models(ref_table).read():
        name = r["source"].split(":", 1)[1] if r["source"].startswith("reference:") else None
        if name:
            ours[name] = r["median_ms"]
    rows = load_rows(Path(args.published), ours)
    if len(rows) < 4:
        raise SystemExit(f"only {len(rows)} published rows have a measured counterpart")
    x = np.array([r["cpu_litert_ms"] for r in rows])
    y = np.array([r["pixel_ms"] for r in rows])
    loo = np.array([fit_predict(np.delete(x, i), np.delete(y, i), x[i:i + 1])[0] for i in range(len(x))])
    res = {"device": DEVICE, "rows": rows, "loo_pred_ms": loo.tolist(), "loo": latency_metrics(y, loo)}
    strong = np.array([not r["weaker_evidence"] for r in rows])
    if strong.sum() >= 4 and (~strong).any():
        xs, ys = x[strong], y[strong]
        lo = np.array([fit_predict(np.delete(xs, i), np.delete(ys, i), xs[i:i + 1])[0] for i in range(len(xs))])
        res["loo_strong_rows_only"] = latency_metrics(ys, lo)
    few = []
    for tr in itertools.combinations(range(len(x)), 3):
        te = [i for i in range(len(x)) if i not in tr]
        p = fit_predict(x[list(tr)], y[list(tr)], x[te])
        m = latency_metrics(y[te], p)
        few.append((m["mape"], m["spearman"]))
    res["calibrated_on_3"] = {"subsets": len(few), "median_mape": float(np.median([f[0] for f in few])),
                              "median_spearman": float(np.median([f[1] for f in few]))}
    a, b = np.polyfit(np.log(x), np.log(y), 1)
    res["fit_all"] = {"a": float(a), "b": float(b)}
    # the same, from our predictor (operator tables + operator-level model) instead of timings
    pred, info = predicted_ms([r["ours"] for r in rows], args.tables)
    xp = np.array([pred[r["ours"]] for r in rows])
    loo_p = np.array([fit_predict(np.delete(xp, i), np.delete(y, i), xp[i:i + 1])[0]
                      for i in range(len(xp))])
    few_p = []
    for tr in itertools.combinations(range(len(xp)), 3):
        te = [i for i in range(len(xp)) if i not in tr]
        m = latency_metrics(y[te], fit_predict(xp[list(tr)], y[list(tr)], xp[te]))
        few_p.append((m["mape"], m["spearman"]))
    res["predictor"] = {**info, "predicted_ms": pred, "loo_pred_ms": loo_p.tolist(),
                        "loo": latency_metrics(y, loo_p),
                        "vs_measured_here": latency_metrics(x, xp * np.median(x / xp)),
                        "calibrated_on_3": {"median_mape": float(np.median([f[0] for f in few_p])),
                                            "median_spearman": float(np.median([f[1] for f in few_p]))}}
    out = Path(args.out)
    write_json_atomic(out / "published_pixel.json", res)
    lines = ["Pixel 1 (MnasNet paper, single big core) from cpu-litert on this machine; "
             "calibration log(pixel) = a log(ours) + b. *Measured*: our end-to-end timing of the "
             "network; *predicted*: our predictor's figure from operator tables only (sum of "
             "measured operators, the rest from the operator-level model), no timing of the network.",
             "",
             "| network | measured here ms | predicted here ms | published Pixel 1 ms | LOO from measured | "
             "LOO from predicted |",
             "|---|---|---|---|---|---|"]
    for r, p, q in zip(rows, loo, loo_p):
        tag = " (weaker evidence)" if r["weaker_evidence"] else ""
        lines.append(f"| {r['model']}{tag} | {r['cpu_litert_ms']:.2f} | {pred[r['ours']]:.2f} | "
                     f"{r['pixel_ms']:.1f} | {p:.1f} ({100 * (p / r['pixel_ms'] - 1):+.1f}%) | "
                     f"{q:.1f} ({100 * (q / r['pixel_ms'] - 1):+.1f}%) |")
    m = res["loo"]
    lines += ["", f"Leave-one-out over {m['n']} rows: MAPE {100 * m['mape']:.1f}%, within ±10% "
              f"{100 * m['within_10pct']:.0f}%, Spearman {m['spearman']:.3f}, Kendall {m['kendall_tau']:.3f}."]
    if "loo_strong_rows_only" in res:
        s = res["loo_strong_rows_only"]
        lines.append(f"Without the weaker-evidence rows ({s['n']} rows): MAPE {100 * s['mape']:.1f}%, "
                     f"Spearman {s['spearman']:.3f}.")
    c = res["calibrated_on_3"]
    lines.append(f"Calibrated on 3 rows, predicting the others (all {c['subsets']} subsets, medians): "
                 f"MAPE {100 * c['median_mape']:.1f}%, Spearman {c['median_spearman']:.3f}.")
    pm = res["predictor"]
    lines.append(f"From the predictor ({pm['ops_measured']} of {pm['ops']} operators measured, the "
                 f"rest predicted; {pm['op_rows']} table rows): leave-one-out MAPE "
                 f"{100 * pm['loo']['mape']:.1f}%, within ±10% {100 * pm['loo']['within_10pct']:.0f}%, "
                 f"Spearman {pm['loo']['spearman']:.3f}; calibrated on 3 rows: MAPE "
                 f"{100 * pm['calibrated_on_3']['median_mape']:.1f}%, Spearman "
                 f"{pm['calibrated_on_3']['median_spearman']:.3f}. Predicted vs measured here (one "
                 f"scale factor): MAPE {100 * pm['vs_measured_here']['mape']:.1f}%, Spearman "
                 f"{pm['vs_measured_here']['spearman']:.3f}.")
    md = "\n".join(lines)
    (out / "published_pixel.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
