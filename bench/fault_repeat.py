"""The quick fault matrix, repeated: how often a SIGKILLed fleet leaves anything behind.

Runs ``bench/sweep_scale.py --only faults --quick`` N times, each in a fresh
interpreter (fresh storages, fresh PostgreSQL database when a server is available),
and counts per storage the runs that lost, duplicated or stranded (left RUNNING) a
trial, and the runs that were not ok for any reason. A check of the
dead-worker pass (``search.ledger.Ledger.fail_dead``):

    python bench/fault_repeat.py -n 20
    python bench/fault_repeat.py -n 20 --storages journal,sqlite
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, base_parser, md_table, write_results  # noqa: E402


def one_run(k: int, trials: int, storages: str | None, no_postgres: bool) -> tuple[list[dict], float, str]:
    """One quick fault matrix in a child interpreter: its fault rows, wall seconds, stderr tail."""
    with tempfile.TemporaryDirectory(prefix="mnas-faults-") as tmp:
        raw = Path(tmp) / "res.json"
        cmd = [sys.executable, str(REPO / "bench" / "sweep_scale.py"), "--only", "faults", "--quick",
               "--trials", str(trials), "--seed", str(k), "--out", tmp, "--json-out", str(raw)]
        if storages:
            cmd += ["--storages", storages]
        if no_postgres:
            cmd.append("--no-postgres")
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rows = json.loads(raw.read_text()).get("faults", []) if raw.is_file() else []
        return rows, wall, p.stderr.strip().splitlines()[-1] if p.stderr.strip() and not rows else ""


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("-n", "--runs", type=int, default=20, help="repeats of the quick matrix")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--storages", default=None, help="comma-separated subset: journal,sqlite,postgresql")
    p.add_argument("--no-postgres", action="store_true", help="journal and sqlite only")
    args = p.parse_args(argv)
    if args.runs < 1 or args.trials < 1:
        p.error("--runs and --trials must be >= 1")
    started = dt.datetime.now(dt.timezone.utc)
    per: dict[str, dict] = {}
    runs = []
    for k in range(args.runs):
        rows, wall, err = one_run(k, args.trials, args.storages, args.no_postgres)
        if not rows:
            runs.append({"run": k, "storage": None, "error": err or "no result", "wall_s": round(wall, 1)})
            print(f"run {k + 1}/{args.runs}: no result ({err})", flush=True)
            continue
        for r in rows:
            s = per.setdefault(r["storage"], {"runs": 0, "left_behind": 0, "not_ok": 0, "kills": 0})
            bad = r["lost"] + r["duplicated"] + r["stuck"] > 0
            s["runs"] += 1
            s["left_behind"] += int(bad)
            s["not_ok"] += int(not r["ok"])
            s["kills"] += r["kills"]
            runs.append({"run": k, **{c: r[c] for c in ("storage", "controller", "fault", "kills", "lost",
                                                         "duplicated", "stuck", "failed_trials", "ok")}})
        print(f"run {k + 1}/{args.runs}: " + ", ".join(
            f"{r['storage']} kills={r['kills']} lost={r['lost']} dup={r['duplicated']} stuck={r['stuck']} "
            f"ok={r['ok']}" for r in rows) + f" ({wall:.0f} s)", flush=True)
    failed_runs = sum(1 for r in runs if r.get("storage") is None)
    res = {"runs": args.runs, "trials": args.trials, "per_storage": per, "runs_without_result": failed_runs,
           "rows": runs}
    md = [f"# The quick fault matrix, {args.runs} times", "",
          "Each run: 4 workers (NSGA-II, TPE, PPO, evolution) per storage, three SIGKILLs (before "
          "the first trial, mid-trial, during the reference claims), restarts "
          "(`bench/sweep_scale.py --only faults --quick`). *left behind*: runs with a lost, "
          "duplicated or stranded (RUNNING) trial.", "",
          md_table(["storage", "runs", "kills", "left behind", "not ok"],
                   [[s, v["runs"], v["kills"], v["left_behind"], v["not_ok"]] for s, v in per.items()]),
          "", f"Runs without a result: {failed_runs}."]
    write_results("fault_repeat", res, "\n".join(md), out=args.out, seeds=list(range(args.runs)),
                  config={"runs": args.runs, "trials": args.trials, "storages": args.storages},
                  started=started)
    clean = failed_runs == 0 and all(v["left_behind"] == 0 and v["not_ok"] == 0 for v in per.values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
