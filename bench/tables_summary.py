"""Summary of the shipped latency tables: rows, coverage, wall time, throughput, drift.

Reads every ``data/latency_tables/<profile>/*.csv`` with its provenance JSON and writes
``bench/results/tables_summary.{json,md}``: per table the rows measured against the
rows the space has (operators, or the planned networks), wall time over all sessions,
measurement throughput (rows per minute, conversion included), conversion seconds,
the drift of the reference operator (max/min of its per-chunk medians), and the
median relative spread of the rows.

    python bench/tables_summary.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import base_parser, md_table, write_results  # noqa: E402

PLANNED_MODELS = {"anb_models.csv": 1000, "mnasnet_models.csv": 2000, "fbnet_models.csv": 1000,
                  "nasbench-macro_models.csv": 3969, "reference_models.csv": 45,
                  **{f"{s}_models_repeat.csv": 200 for s in ("anb", "mnasnet", "fbnet")},
                  **{f"{s}_models_busy.csv": 200 for s in ("anb", "mnasnet")}}


def summarise(root: Path) -> list[dict]:
    """One dict per table under ``root`` (``<profile>/<name>.csv``)."""
    from space.spaces import get_space, space_names
    from surrogate.tables import Table, provenance_path

    out = []
    for csv_path in sorted(root.glob("*/*.csv")):
        profile, name = csv_path.parent.name, csv_path.name
        kind = "ops" if "_ops" in name else "models"
        rows = (Table.ops(csv_path) if kind == "ops" else Table.models(csv_path)).read()
        prov_p = provenance_path(csv_path)
        prov = json.loads(prov_p.read_text()) if prov_p.is_file() else {}
        space = name.split("_ops")[0] if kind == "ops" else name.split("_models")[0]
        if kind == "ops" and space in space_names():
            planned = len(get_space(space).operator_configs())  # stem and head included
        elif kind == "ops" and space == "reference":  # the reference networks' operators
            from surrogate.measure.ondemand import reference_configs, reference_networks

            # the registry's operators (and the published variants' when ../shared is found)
            planned = len({lc.key() for lc in reference_configs(reference_networks())}
                          | {r["op_key"] for r in rows})
        elif name.startswith("reference"):
            from space.reference import REFERENCE

            planned = len(REFERENCE)
        else:
            planned = PLANNED_MODELS.get(name)
        sessions = prov.get("sessions", [])
        wall = timing = sum(s.get("wall_s", 0.0) for s in sessions)
        conv = sum(s.get("convert_s", 0.0) for s in sessions)
        conv_only = prov.get("conversions", [])  # --convert-only runs before the timing ones
        wall += sum(c.get("wall_s", 0.0) for c in conv_only)
        conv += sum(c.get("convert_s", 0.0) for c in conv_only)
        spread = [r["rel_spread"] for r in rows if np.isfinite(r.get("rel_spread", np.nan))]
        both = [(r["cpu_ms"], r["wall_ms"]) for r in rows
                if np.isfinite(r.get("cpu_ms", np.nan)) and np.isfinite(r.get("wall_ms", np.nan)) and r["wall_ms"] > 0]
        ratio = np.array([c / w for c, w in both]) if both else np.array([])
        timing_kind = (rows[0].get("clock"), rows[0].get("estimator")) if rows else (None, None)
        out.append({
            "clock": timing_kind[0], "estimator": timing_kind[1],
            "cpu_over_wall_median": float(np.median(ratio)) if ratio.size else None,
            "cpu_over_wall_p05_p95": [float(np.percentile(ratio, 5)), float(np.percentile(ratio, 95))]
            if ratio.size else None,
            "clock_diverged_rows": int(sum(int(r.get("clock_diverged") or 0) for r in rows)),
            "host_id": ((prov.get("host") or {}).get("host") or {}).get("host_id"),
            "profile": profile, "table": name, "kind": kind, "rows": len(rows), "planned": planned,
            "complete": planned is not None and len(rows) >= planned,
            "wall_s": round(wall, 1), "convert_s": round(conv, 1),
            "per_minute": round(len(rows) / wall * 60, 2) if wall > 0 else None,
            "timing_s": round(timing, 1),  # the timing sessions alone (conversion beside them included)
            "timed_per_minute": round(len(rows) / timing * 60, 2) if timing > 0 else None,
            "remeasured_rows": int(sum(int(r.get("remeasured") or 0) for r in rows)),
            "drift_retimed_chunks": sum((s.get("drift_guard") or {}).get("retried_chunks", 0)
                                        for s in sessions),
            "min_ms": float(min(r["median_ms"] for r in rows)) if rows else None,
            "max_ms": float(max(r["median_ms"] for r in rows)) if rows else None,
            "sessions": len(sessions),
            "ref_drift": (prov.get("reference_ms") or {}).get("drift_max_over_min"),
            "median_rel_spread": float(np.median(spread)) if spread else None,
            "median_ms": float(np.median([r["median_ms"] for r in rows])) if rows else None,
            "host": (prov.get("host") or {}).get("cpu_model"),
            "updated": prov.get("updated"),
        })
    return out


def main(argv=None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--tables", default=None, help="tables root (default data/latency_tables)")
    args = ap.parse_args(argv)
    from surrogate.tables import tables_dir

    res = summarise(tables_dir(args.tables))
    rows = [[r["profile"], r["table"], f"{r['rows']}" + (f" / {r['planned']}" if r["planned"] else ""),
             "yes" if r["complete"] else "**no**", f"{r['wall_s'] / 60:.1f}",
             f"{r['convert_s'] / 60:.1f}", r["per_minute"] if r["per_minute"] is not None else "-",
             f"{r['timing_s'] / 60:.1f}", r["timed_per_minute"] if r["timed_per_minute"] is not None else "-",
             r["remeasured_rows"], r["drift_retimed_chunks"],
             f"{r['min_ms']:.2f}-{r['max_ms']:.2f}" if r["min_ms"] is not None else "-",
             f"{r['clock']}/{r['estimator']}",
             (f"{r['cpu_over_wall_median']:.3f} [{r['cpu_over_wall_p05_p95'][0]:.3f}, "
              f"{r['cpu_over_wall_p05_p95'][1]:.3f}]") if r["cpu_over_wall_median"] else "-",
             r["clock_diverged_rows"],
             f"{(r['ref_drift'] - 1):.1%}" if r["ref_drift"] else "-",
             f"{r['median_rel_spread']:.1%}" if r["median_rel_spread"] is not None else "-"]
            for r in res]
    md = ("# Shipped latency tables\n\n"
          "Wall time and throughput include conversion (the cpu-litert tables: the direct LiteRT writer, "
          "in the timing process; the cpu-onnxruntime ones, measured 2026-11-26: torch.onnx in a "
          "worker on the other core); drift is max/min - 1 of the reference operator's per-chunk "
          "medians; spread is the IQR of each row's round latencies over its latency. *Timing min* and "
          "*timed rows/min* count the timing sessions alone.\n\n"
          + md_table(["profile", "table", "rows", "complete", "wall min", "convert min",
                      "rows/min", "timing min", "timed rows/min", "re-measured rows",
                      "drift-guard re-timed chunks", "latency ms", "clock/estimator",
                      "cpu/wall median [p5, p95]", "clock-diverged rows", "ref drift", "median spread"], rows))
    write_results("tables_summary", {"tables": res}, md, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
