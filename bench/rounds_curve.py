"""Repeatability of end-to-end network timings against the number of rounds.

Two passes, each in its own process and at its own time, time the first N networks of
``<space>_models.csv`` with R rounds each under the table's protocol (clock, estimator,
runs, reference pairing and base; no extra rounds), keeping every round's estimate
(``surrogate.measure.repeatability.time_rounds``; resumable: rerun a killed pass). The
report compares the passes when each network's latency is the median of only k rounds
(``rounds_curve``), says the smallest k that meets the targets (median |diff| <= 1.5 %
and >= 95 % within ±5 %) and what it costs per 1,000 networks.

    python bench/rounds_curve.py --space mnasnet -n 40 --rounds 30 --pass a
    python bench/rounds_curve.py --space mnasnet -n 40 --rounds 30 --pass b   # later, new process
    python bench/rounds_curve.py --space mnasnet --pass report
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, md_table, write_results  # noqa: E402
from surrogate.measure import repeatability as rep  # noqa: E402
from surrogate.tables import table_path  # noqa: E402

PASS_SEEDS = {"a": 0, "b": 1}  # another shuffle order per pass, as a second run would have
TARGET_MEDIAN, TARGET_WITHIN5 = 0.015, 0.95


def run_pass(profile: str, space: str, n: int, rounds: int, label: str, out: Path, tables=None,
             chunk: int = 16, progress: bool = True) -> dict:
    base = table_path(profile, space, "models", tables)
    settings, base_ms, archs = rep.rounds_protocol(base, n, rounds)
    t0 = time.perf_counter()

    def show(done: int, total: int) -> None:
        print(f"[{label}] {done}/{total} networks, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)

    data = rep.time_rounds(profile, archs, rep.pass_path(out, profile, space, label), settings=settings,
                           reference_base_ms=base_ms, chunk=chunk, seed=PASS_SEEDS[label],
                           label=label, progress=show if progress else None)
    data_n = sum(1 for a in archs if a in data["networks"])
    print(f"pass {label}: {data_n}/{n} networks with {rounds} rounds in "
          f"{rep.pass_path(out, profile, space, label)}")
    return data


def _curve_cells(rows: list[dict]) -> list[list[str]]:
    return [[str(r["k"]), str(r["blocks"]), fmt(r["median_abs_diff"], "pct"),
             fmt(r["p95_abs_diff"], "pct"), fmt(r["within_2pct"], "pct"),
             fmt(r["within_5pct"], "pct"), fmt(r["within_10pct"], "pct"), fmt(r["median_ratio"]),
             fmt(r["shifted_median_abs_diff"], "pct"), fmt(r["shifted_within_5pct"], "pct"),
             fmt(r["first_median_abs_diff"], "pct"), fmt(r["first_within_5pct"], "pct"),
             fmt(r.get("within_pass_median_abs_diff"), "pct"),
             fmt(r.get("within_pass_within_5pct"), "pct"), fmt(r.get("minutes_per_1000"), "s")]
            for r in rows]


HEADERS = ["k rounds", "blocks", "median abs diff", "p95 abs diff", "within 2%", "within 5%",
           "within 10%", "median ratio", "shift-removed median abs diff", "shift-removed within 5%",
           "first k: median abs diff", "first k: within 5%", "within-pass median abs diff",
           "within-pass within 5%", "min per 1,000 nets"]


def _sentence(c: dict, label: str) -> str:
    if c["k"] is None:
        return f"{label}: not reached by R = {c['rounds']} rounds"
    return (f"{label}: k = {c['k']} rounds ({fmt(c['minutes_per_1000'], 's')} min of timing per "
            f"1,000 networks)")


def report(profile: str, space: str, out: Path) -> dict:
    passes = {}
    for label in ("a", "b"):
        p = rep.pass_path(out, profile, space, label)
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: run --pass {label} first")
        passes[label] = json.loads(p.read_text())
    a, b = passes["a"], passes["b"]
    if a["settings"] != b["settings"] or a["reference_base_ms"] != b["reference_base_ms"]:
        raise ValueError(f"passes a and b of {space} were timed with different settings or base")
    common = sorted(set(a["networks"]) & set(b["networks"]))
    spr = float(np.median([p["networks"][x]["seconds_per_round"] for p in (a, b) for x in common]))
    load = float(np.median([p["networks"][x]["load_s"] for p in (a, b) for x in common]))
    ks = rep.CURVE_KS + (a["rounds"] // 2,)  # R/2: the largest k with a within-pass figure
    curves = {key: rep.rounds_curve(rep.pass_rounds(a, key), rep.pass_rounds(b, key), ks,
                                    seconds_per_round=spr) for key in ("rounds_ms", "raw_ms")}
    main = curves["rounds_ms"]
    concl = rep.curve_conclusion(main, TARGET_MEDIAN, TARGET_WITHIN5)
    concl_shift = rep.curve_conclusion(main, TARGET_MEDIAN, TARGET_WITHIN5, prefix="shifted_")
    concl_raw = rep.curve_conclusion(curves["raw_ms"], TARGET_MEDIAN, TARGET_WITHIN5)

    def spread(p: dict) -> float:  # median IQR/median of a network's R round estimates
        return float(np.median([np.subtract(*np.percentile(p["networks"][x]["rounds_ms"], [75, 25]))
                                / np.median(p["networks"][x]["rounds_ms"]) for x in common]))

    half = next((r for r in main if r["k"] == a["rounds"] // 2 and "within_pass_median_abs_diff" in r),
                None)
    why = "" if half is None else (
        f"At k = {half['k']}: between the two passes median |diff| "
        f"{fmt(half['median_abs_diff'], 'pct')} ({fmt(half['within_5pct'], 'pct')} within ±5 %), "
        f"between two halves of the same pass {fmt(half['within_pass_median_abs_diff'], 'pct')} "
        f"({fmt(half['within_pass_within_5pct'], 'pct')} within ±5 %): "
        + ("the passes differ by more than two halves of one pass, so part of the difference "
           "belongs to the process (or the hour) and more rounds do not remove it."
           if half["median_abs_diff"] > 1.5 * half["within_pass_median_abs_diff"] else
           "the passes differ no more than two halves of one pass: round-to-round noise, which "
           "more rounds reduce."))
    est = a["settings"]["estimator"]
    clock = a["settings"]["clock"]
    line = (f"Targets (median |diff| <= 1.5 %, >= 95 % within ±5 %), {space}, {len(common)} networks, "
            f"{clock}/{est}: " + _sentence(concl, "as measured") + "; "
            + _sentence(concl_shift, "with the pass ratio divided out") + "; "
            + _sentence(concl_raw, f"unpaired {clock}/{est.replace('+ref', '')}") + ".")
    res = {"profile": profile, "space": space, "n": len(common), "rounds": a["rounds"],
           "settings": a["settings"], "reference_base_ms": a["reference_base_ms"],
           "seconds_per_network_round": spr, "load_s_per_network": load,
           "rel_spread": {k: spread(p) for k, p in passes.items()},
           "passes": {k: {"created": p.get("created"), "updated": p.get("updated"),
                          "wall_s": sum(c["wall_s"] for c in p["chunks"]),
                          "other_cpu_cores": [c["other_cpu_cores"] for c in p["chunks"]],
                          "pinned_core": sorted({c["pinned_core"] for c in p["chunks"]}
                                                - {None})} for k, p in passes.items()},
           "curve": main, "curve_unpaired": curves["raw_ms"],
           "conclusion": concl, "conclusion_shift_removed": concl_shift,
           "conclusion_unpaired": concl_raw, "conclusion_line": line, "process_effect": why}
    md = "\n\n".join([
        f"## Repeatability against rounds: {profile}, {space} ({len(common)} networks, "
        f"{a['rounds']} rounds per pass, {clock}/{est}, {a['settings']['runs']} runs per round)",
        line + (" " + why if why else ""),
        f"Pass a {passes['a'].get('created')} .. {passes['a'].get('updated')}, pass b "
        f"{passes['b'].get('created')} .. {passes['b'].get('updated')} (separate processes). "
        f"Timing cost {fmt(spr, 's')} s per network and round (reference blocks included; "
        f"+{fmt(load, 's')} s to load a network). Round-to-round spread (IQR/median over the "
        f"{a['rounds']} rounds): a {fmt(res['rel_spread']['a'], 'pct')}, "
        f"b {fmt(res['rel_spread']['b'], 'pct')}. Figures for k are means over the R//k disjoint "
        f"blocks of k rounds (block j of a against block j of b); 'first k' is block 0 alone; "
        f"'within-pass' compares neighbouring blocks of the same pass (no process change).",
        "### " + est + " (the tables' latency)", md_table(HEADERS, _curve_cells(main)),
        f"### unpaired {clock}/{est.replace('+ref', '')} (same runs, no reference ratio)",
        md_table(HEADERS, _curve_cells(curves["raw_ms"]))])
    write_results(f"rounds_curve_{profile}_{space}", res, md, out,
                  config={"targets": [TARGET_MEDIAN, TARGET_WITHIN5], "pass_seeds": PASS_SEEDS})
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-litert")
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("-n", type=int, default=40, help="the first N networks of <space>_models.csv")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=16, help="networks interleaved per measure() call")
    ap.add_argument("--pass", dest="which", choices=("a", "b", "report"), required=True)
    ap.add_argument("--tables", default=None, help="latency tables folder (default data/latency_tables)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.which == "report":
            report(args.profile, args.space, out)
        else:
            run_pass(args.profile, args.space, args.n, args.rounds, args.which, out, args.tables,
                     args.chunk, not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:  # bad input: one line, exit 2
        print(f"rounds_curve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
