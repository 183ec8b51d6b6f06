"""Shared helpers for the benchmark scripts under ``bench/``.

- :func:`data_dir` / :func:`data_file`: the read-only benchmark data (``--data``,
  ``$MNAS_BENCHMARKS_DIR`` or ``../shared/benchmarks`` beside the checkout).
- :func:`base_parser`: the common options ``--data``, ``--out``, ``--seed``, ``--quick``.
- :func:`write_results`: ``<out>/<name>.json`` (results plus machine info, date,
  library versions and seeds) and ``<out>/<name>.md`` (Markdown), both written
  atomically; the Markdown is printed to stdout.
- :func:`md_table`, :func:`median_metrics`, :func:`fmt`: tables and medians.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # running ``python bench/x.py`` from anywhere
    sys.path.insert(0, str(REPO))

ENV_DATA = "MNAS_BENCHMARKS_DIR"
RESULTS_DIR = REPO / "bench" / "results"
METRIC_KEYS = ("within_5pct", "within_10pct", "mape", "rmse_ms", "kendall_tau", "spearman")


# -- data ----------------------------------------------------------------------------
def data_dir(data: str | os.PathLike | None = None) -> Path:
    """The benchmark data folder: ``data``, ``$MNAS_BENCHMARKS_DIR`` or ``../shared/benchmarks``."""
    from surrogate.datasets import benchmarks_dir

    return benchmarks_dir(data)


def data_file(data: str | os.PathLike | None, rel: str) -> Path:
    """``rel`` inside the data folder (``data`` may also be the file itself)."""
    from surrogate.datasets import benchmark_file

    return benchmark_file(data, rel)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- environment -----------------------------------------------------------------------
def limit_threads(n: int = 1) -> None:
    """Keep torch (and BLAS via env, if not yet loaded) to ``n`` threads."""
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, affinity, load, OS and Python."""
    try:
        from surrogate.measure.profiles import cpu_model

        cpu = cpu_model()
    except Exception:  # pragma: no cover - fall back to platform
        cpu = platform.processor() or platform.machine()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "affinity": affinity,
            "loadavg_at_write": load, "system": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "python": platform.python_version()}


def library_versions() -> dict[str, str]:
    """Versions of the numeric libraries the benchmarks use."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod, name in (("scipy", "scipy"), ("sklearn", "scikit-learn"), ("xgboost", "xgboost"),
                      ("torch", "torch")):
        try:
            out[name] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            out[name] = "absent"
    return out


def git_commit() -> str | None:
    """HEAD commit of the checkout (None if unavailable); the tree may be dirty."""
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            p = REPO / ".git" / ref[5:]
            if p.is_file():
                return p.read_text().strip()
            packed = REPO / ".git" / "packed-refs"
            for line in packed.read_text().splitlines():
                if line.endswith(ref[5:]):
                    return line.split()[0]
            return None
        return ref
    except OSError:
        return None


# -- CLI ---------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser with ``--data``, ``--out``, ``--seed``, ``--quick``."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help=f"benchmark data folder (default ${ENV_DATA} or ../shared/benchmarks)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="folder for <name>.json and <name>.md")
    p.add_argument("--seed", type=int, default=0, help="base seed (splits, draws, models)")
    p.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    return p


# -- tables ------------------------------------------------------------------------------
def fmt(v: Any, kind: str = "") -> str:
    """A table cell: ``pct`` -> ``71.3%``, floats to 3 decimals, None/nan -> ``-``."""
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "-"
        if kind == "pct":
            return f"{100 * float(v):.1f}%"
        if kind == "ms":
            return f"{float(v):.2f}"
        if kind == "rate":
            return f"{float(v):,.0f}"
        if kind == "s":
            return f"{float(v):.2f}"
        return f"{float(v):.3f}"
    return str(v)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (cells already formatted or formatted with :func:`fmt`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |")
    return "\n".join(lines)


def metric_cells(m: Mapping[str, float]) -> list[str]:
    """Cells for within +-5 / +-10, MAPE, RMSE, Kendall, Spearman."""
    return [fmt(m.get("within_5pct"), "pct"), fmt(m.get("within_10pct"), "pct"),
            fmt(m.get("mape"), "pct"), fmt(m.get("rmse_ms"), "ms"), fmt(m.get("kendall_tau")),
            fmt(m.get("spearman"))]


METRIC_HEADERS = ["±5%", "±10%", "MAPE", "RMSE ms", "Kendall", "Spearman"]


def median_metrics(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key median over repeats (``n`` kept from the first run, ``repeats`` added)."""
    if not runs:
        return {}
    out: dict[str, float] = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float, np.floating))]
        if k == "n":
            out[k] = int(runs[0][k])
        elif vals:
            out[k] = float(np.median(vals))
    out["repeats"] = len(runs)
    return out


def curve_medians(curve, rename: Mapping[str, str] | None = None) -> dict[str, dict]:
    """A :func:`surrogate.predict.fewshot.kshot_curve` frame as ``{str(K): {method: medians}}``."""
    rename = dict(rename or {})
    keys = [c for c in curve.columns if c not in ("k", "draw", "method")]
    out: dict[str, dict] = {}
    for (k, method), g in curve.groupby(["k", "method"], sort=False):
        out.setdefault(str(k), {})[rename.get(method, method)] = median_metrics(
            g[keys].to_dict("records"))
    return out


# -- output ------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, Path):
        return str(v)
    return v


def write_results(name: str, results: Mapping[str, Any], markdown: str, out: str | os.PathLike,
                  *, seeds: Any = None, config: Mapping[str, Any] | None = None,
                  started: dt.datetime | None = None) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md`` atomically; print the Markdown."""
    from surrogate.atomic import write_atomic

    out = Path(out)
    now = dt.datetime.now(dt.timezone.utc)
    meta = {"benchmark": name, "date_utc": now.isoformat(timespec="seconds"),
            "started_utc": started.isoformat(timespec="seconds") if started else None,
            "elapsed_s": (now - started).total_seconds() if started else None,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "git_commit": git_commit(), "machine": machine_info(),
            "libraries": library_versions(), "seeds": seeds, "config": dict(config or {})}
    payload = {"meta": meta, "results": results}
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    write_atomic(jpath, json.dumps(_jsonable(payload), indent=1, sort_keys=False) + "\n")
    m = meta["machine"]
    footer = (f"\n\n_{meta['date_utc']} · {m['cpu_model']}, {m['cpu_count']} cores "
              f"(affinity {m['affinity']}, load {m['loadavg_at_write']}) · "
              + ", ".join(f"{k} {v}" for k, v in meta["libraries"].items())
              + f" · seeds {seeds} · `{meta['command']}`_\n")
    write_atomic(mpath, markdown.rstrip() + footer)
    print(markdown)
    print(f"\nwrote {jpath} and {mpath}")
    return jpath, mpath
