"""Fit and ship the predict-only device profiles (surrogate/data/predictors/<device>/<space>/).

One predictor per HELP FBNet device (space ``fbnet``, MIT) and per Accel-NASBench
accelerator (space ``anb``, Apache-2.0), by :func:`surrogate.predict.zoo.write_published`:
the model is chosen among ``additive``, ``ridge`` and ``huber`` by validation inside 80%
of the rows, scored on the other 20% (recorded in meta.json with the source file's
sha256), then refitted on every row. The data is read, never copied.

Writes bench/results/zoo_predictors.json and .md. Run:
``taskset -c 0 python bench/zoo_predictors.py [--ship]`` (without ``--ship`` the
predictors go to a temporary folder).
"""
from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_parser, fmt, limit_threads, md_table, write_results  # noqa: E402

from surrogate.predict.zoo import PUBLISHED, load_published, write_published  # noqa: E402

NAME = "zoo_predictors"


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--ship", action="store_true", help="write into surrogate/data/predictors")
    p.add_argument("--devices", default=None, help="comma-separated subset (default: all)")
    a = p.parse_args(argv)
    limit_threads(1)
    started = dt.datetime.now(dt.timezone.utc)
    names = a.devices.split(",") if a.devices else list(PUBLISHED)
    root = None if a.ship else Path(tempfile.mkdtemp(prefix="zoo."))
    cache: dict = {}
    results, rows = {}, []
    import json

    for n in names:
        dev = PUBLISHED[n]
        if dev.dataset not in cache:
            cache[dev.dataset] = load_published(dev.dataset, a.data)
        folder = write_published(n, root=root, seed=a.seed, ds=cache[dev.dataset])
        zoo = json.loads((folder / "meta.json").read_text())["zoo"]
        size = sum(f.stat().st_size for f in folder.iterdir())
        v = zoo["validation"]["chosen"]
        results[n] = {"folder": str(folder), "bytes": size, "model": zoo["model"],
                      "validation": zoo["validation"], "provenance": zoo["provenance"]}
        rows.append([n, dev.space, dev.license, zoo["model"], fmt(v["spearman"]),
                     fmt(v["kendall_tau"]), fmt(v["mape"], "pct"), fmt(v["within_10pct"], "pct"),
                     f"{size / 1024:.1f} KiB"])
        print(f"{n}: {zoo['model']} Spearman {v['spearman']:.3f} MAPE {v['mape']:.4f}", flush=True)
    md = "\n".join(["# Predict-only device profiles (shipped predictors)", "",
                    "Chosen by validation inside 80% of the rows; figures on the held-out 20%; "
                    "the shipped model is refitted on every row.", "",
                    md_table(["device", "space", "license", "model", "Spearman", "Kendall", "MAPE",
                              "±10%", "size"], rows)])
    write_results(NAME, results, md, a.out, seeds=[a.seed], started=started,
                  config={"ship": a.ship, "devices": names})
    return results


if __name__ == "__main__":
    main()
