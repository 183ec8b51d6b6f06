"""Re-timing a sweep's finalists on the device, beside their predicted latency.

The measurement side of ``--remeasure K``: the search side picks the front networks
and passes them in (with the device profile and the latency objective's description);
nothing here knows about studies or sweeps.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .profiles import DeviceProfile

__all__ = ["reference_baseline_ms", "remeasure", "tables_host_match"]

FLAG_ERROR = 0.10
"""A finalist whose prediction and measurement differ by more than this is flagged."""


def remeasure(device: DeviceProfile, space: str, front: list[dict], *, out_dir: str | Path,
              latency: dict | None = None, progress: bool = True,
              cache_dir: str | None = None, chunk: int | None = None) -> tuple[list[dict], float | None]:
    """Time the ``front`` networks (dicts with ``arch`` and ``latency_ms``) end to end on
    ``device``; (their rows with ``measured_ms``, ``error``, ``flag`` beside the predicted
    figures, the median reference-operator time here or None).

    They are timed the way the predictor's table was (its estimator and, for a ``+ref``
    table, its reference base; ``latency``: the objective's ``describe()``), so prediction
    and measurement share a scale. Writes ``finalists_models.csv`` under ``out_dir``;
    ``chunk``: networks per measuring job (default: the whole front).
    """
    from space import format_arch
    from space.blockstring import parse_arch

    from .jobs import measure_models

    source = (latency or {}).get("table_source")
    settings, reference_base, paired = _timed_like(device, source)
    archs = [parse_arch(p["arch"]) for p in front]
    summary = measure_models(device, space, [(a, "finalist") for a in archs],
                             out_dir=Path(out_dir), table_name="finalists_models.csv", progress=progress,
                             settings=settings, chunk=chunk or len(front), cache_dir=cache_dir,
                             convert_all_cores=True, reference_base_ms=reference_base)
    by_arch = {r["arch"]: r for r in summary.rows}
    timed = [by_arch.get(format_arch(a)) for a in archs]  # the rows of the front, in its order
    # the reference operator when the predictor's own tables were timed (the shipped
    # tables' when the predictor names none or its table is gone)
    base = _table_reference(source) or reference_baseline_ms(device.name, space)
    rows = [_compare(p, r, base, paired) for p, r in zip(front, timed)]
    refs = [r["ref_ms"] for r in timed if r and np.isfinite(r.get("ref_ms", np.nan))]
    return rows, (float(np.median(refs)) if refs else None)


def _timed_like(device: DeviceProfile, source: str | None):
    """(MeasureSettings, reference base ms, reference-paired?) matching how the table
    ``source`` was timed (:class:`surrogate.timingspec.TimingSpec`), when its clock is the device's."""
    from surrogate.paths import read_provenance
    from surrogate.timingspec import TimingSpec

    from .hostjob import NETWORK_SETTINGS
    from .timing import MeasureSettings

    prov = read_provenance(source) if source else None
    spec = TimingSpec.from_provenance(prov) if prov is not None else None
    if spec is None or spec.clock != device.clock:
        return MeasureSettings(**NETWORK_SETTINGS, estimator=None), None, False
    # finalists timed reference-paired (+ref) are on the tables' reference scale already
    return (MeasureSettings(**NETWORK_SETTINGS, estimator=spec.estimator),
            prov.get("reference_base_ms"), spec.paired)


def _table_reference(source: str | None) -> float | None:
    from .host import table_reference_ms

    return table_reference_ms(source) if source else None


def _compare(front_row: dict, timed: dict | None, base: float | None, paired: bool) -> dict:
    """One finalist: its front row with the measurement, error, flag and reference ratio."""
    m = timed["median_ms"] if timed else None
    err = (front_row["latency_ms"] / m - 1) if m else None
    # the reference operator now vs when the tables were timed: a busy or different
    # machine shows up here, and the normalised figure discounts it (paired: already)
    ref = timed.get("ref_ms", math.nan) if timed else math.nan
    ratio = (timed["ref_ms"] / base) if (timed and base and np.isfinite(ref)) else None
    norm = m if paired else ((m / ratio) if (m and ratio) else None)
    return {**front_row, "measured_ms": m, "error": err,
            "flag": bool(err is not None and abs(err) > FLAG_ERROR),
            "reference_ratio": ratio, "reference_paired": paired,
            "measured_normalised_ms": norm}


def tables_host_match(profile: str, space: str, latency: dict | None, finalists: list[dict],
                         reference_ms_here: float | None = None) -> dict:
    """Whether the tables behind a sweep's latency (``latency``: the objective's
    ``describe()``) came from this host kind (:func:`.host.host_match`), with ``message``:
    a few plain lines when they did not (or cannot be told) and a finalist is flagged."""
    from surrogate.tables import table_path

    from .host import host_match, predictor_table

    lat = latency or {}
    subject = "the latency tables behind this predictor"
    if lat.get("kind") == "measured":
        subject = "the end-to-end table this sweep looked latency up in"
        table = table_path(profile, space, "models")
        table = table if table.is_file() else None
    else:
        table = predictor_table(lat.get("predictor"), profile, space)
    if table is None:
        return {"table": None, "same": None, "message": []}
    try:
        m = host_match(table, reference_ms_here=reference_ms_here)
    except (ValueError, OSError) as exc:  # a bad provenance file must not lose a finished sweep
        return {"table": str(table), "same": None, "error": str(exc), "message": []}
    flagged = any(f.get("flag") for f in finalists)
    return {**m.as_dict(), "flagged": flagged,
            "message": m.explain(space, reference=False, subject=subject)
            if flagged and m.same is not True else []}


def reference_baseline_ms(profile: str, space: str) -> float | None:
    """Median reference-operator time in the shipped tables of (profile, space), if any."""
    from surrogate.tables import Table, reference_baseline, table_path

    for table in (Table.models(table_path(profile, space, "models")),
                  Table.ops(table_path(profile, space, "ops"))):
        base = reference_baseline(table)
        if base is not None:
            return base
    return None
