"""A new host from nothing: `mnas measure host` for a space with an empty export cache.

Runs :func:`surrogate.measure.hostjob.measure_host` into a temporary home and cache
(nothing reused), and reports wall time of the operator table and of the networks,
rows a minute, and the calibrated predictor's leave-one-out error over the networks.

    python bench/new_host.py --space mnasnet            # the < 15 min target (3,080 operators)
    python bench/new_host.py --space anb --networks 12  # what the main job does on a new host
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from surrogate.atomic import write_json_atomic  # noqa: E402


def run(space: str, networks: int, out: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MNAS_CACHE_DIR"] = str(Path(tmp) / "cache")  # empty: every model is written anew
        from surrogate.measure.hostjob import measure_host

        t0 = time.perf_counter()
        res = measure_host("cpu-litert", space, networks=networks, home=Path(tmp) / "home", progress=False)
        wall = time.perf_counter() - t0
    d = res.as_dict()
    d.update(total_wall_s=round(wall, 1), cpus_allowed=len(os.sched_getaffinity(0)),
             ops_per_min=round(res.ops / res.ops_wall_s * 60, 1),
             networks_per_min=round(res.networks / res.models_wall_s * 60, 1))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"new_host_{space}.json", d)
    loo = res.fit["loo"]
    md = ("| space | operators | networks | operator table | networks | total (empty cache) | "
          "calibrated sum, leave-one-out MAPE / within 10% |\n|---|---|---|---|---|---|---|\n"
          f"| {space} | {res.ops} | {res.networks} | {res.ops_wall_s / 60:.1f} min ({d['ops_per_min']:.0f}/min) | "
          f"{res.models_wall_s:.0f} s | {wall / 60:.1f} min on {d['cpus_allowed']} core(s) | "
          f"{100 * loo['mape']:.1f}% / {100 * loo['within_10pct']:.0f}% |\n")
    (out / f"new_host_{space}.md").write_text(md)
    print(md)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("--networks", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    run(a.space, a.networks, Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
