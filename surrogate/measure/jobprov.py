"""The provenance of a measuring job: sessions, checkpoints, and a killed session's rows.

A session is written ``running`` at its start and after every chunk (a checkpoint), and
with its outcome at its end. A process killed between appending rows and its next
checkpoint leaves rows the provenance does not count yet: :func:`reconcile_killed`
(run by the next job on the table, and by ``mnas table merge`` on the table and on
every part) marks such a session ``killed`` and credits it with the rows on disk that
its last checkpoint did not count, so the sessions' ``measured`` sum to the rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..tables import (CLOCK_DIVERGENCE, LEGACY_CLOCK, LEGACY_ESTIMATOR, REFERENCE_OP, Table,
                      file_sha256, now_iso, provenance_path, read_provenance, write_json_atomic)

if TYPE_CHECKING:
    from .profiles import DeviceProfile
    from .timing import MeasureSettings

__all__ = ["finish_provenance", "job_provenance", "now_iso", "reconcile_killed",
           "reference_summary"]


def reconcile_killed(prov: dict, rows_on_disk: int) -> dict:
    """``prov`` with a session still ``running`` (its process died) marked ``killed`` and
    credited with the rows appended after its last checkpoint (``prov['rows']`` counted
    the rows then; ``rows_on_disk`` now). Call it before another writer appends."""
    sessions = [dict(x) if isinstance(x, dict) else x for x in prov.get("sessions", [])]
    counted = prov.get("rows")
    for i, s in enumerate(sessions):
        if not (isinstance(s, dict) and s.get("status") == "running"):
            continue
        s["status"] = "killed"
        if i == len(sessions) - 1 and isinstance(counted, int) and rows_on_disk > counted:
            extra = rows_on_disk - counted
            s["measured"] = int(s.get("measured") or 0) + extra
            s["measured_after_checkpoint"] = extra
    return {**prov, "sessions": sessions}


def job_provenance(table: Table, profile: DeviceProfile, space: str, kind: str,
                   settings: MeasureSettings, runner_info: dict, extra: dict) -> dict:
    """The provenance a session starts from: the file's, reconciled, with this job's setup."""
    prev = read_provenance(table.path, strict=True) or {}
    prev = reconcile_killed(prev, len(table.read()) if table.path.exists() else 0)
    host = profile.host_info()
    return {**prev, "kind": kind, "profile": profile.as_dict(), "space": space, "host": host,
            "settings": settings.as_dict(), "runner": runner_info, "clock": settings.clock,
            "estimator": settings.estimator, "clock_divergence_threshold": CLOCK_DIVERGENCE,
            "reference_op": REFERENCE_OP.key(), "created": prev.get("created", now_iso()),
            "sessions": prev.get("sessions", []), **extra}


def finish_provenance(table: Table, prov: dict, session: dict, *, running: bool = False) -> None:
    """Write the provenance with ``session`` last; ``running``: a checkpoint of a live session
    (written at its start and after every chunk, so a killed session is still on record)."""
    rows = table.read() if table.path.exists() else []
    if running:
        prov = {**prov, "sessions": prov.get("sessions", []) + [{**session, "status": "running"}]}
    else:
        prov["sessions"] = prov.get("sessions", []) + [session]
    prov["updated"] = now_iso()
    prov["rows"] = len(rows)
    prov["table_sha256"] = file_sha256(table.path) if table.path.exists() else None
    prov["wall_s_total"] = round(sum(s.get("wall_s", 0.0) for s in prov["sessions"]), 1)
    summary = reference_summary(rows, prov.get("clock", LEGACY_CLOCK),
                                prov.get("estimator", LEGACY_ESTIMATOR))
    if summary:
        prov["reference_ms"] = summary
    write_json_atomic(provenance_path(table.path), prov)


def reference_summary(rows: list[dict], clock: str, estimator: str) -> dict | None:
    """The provenance's ``reference_ms``: the rows' reference timings (None: none)."""
    refs = [r["ref_ms"] for r in rows if np.isfinite(r.get("ref_ms", np.nan))]
    if not refs:
        return None
    return {"clock": clock, "estimator": estimator, "median": float(np.median(refs)),
            "min": float(np.min(refs)), "max": float(np.max(refs)),
            "drift_max_over_min": float(np.max(refs) / np.min(refs))}
