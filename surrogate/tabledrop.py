"""Drop the rows a table measured in a window of known interference, on the record.

A row's ``measured_at`` says when its chunk was timed. When something else loaded the
machine then (another job pinned itself onto the timing core, a benchmark fleet), the
rows of that window are not this host's latency: :func:`drop_measured_between` removes
them so that the next run of the same job times them again, and records the drop in the
provenance (``dropped``: when, the window, how many rows, why), so the sessions'
``measured`` counts minus the dropped rows equal the table's rows. The table and its
provenance are rewritten atomically under the table's write lock
(:mod:`surrogate.tablelock`); a refused call changes nothing.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from .atomic import write_atomic, write_json_atomic
from .tablelock import TableLock
from .tables import file_sha256, open_table, provenance_path

__all__ = ["drop_measured_between", "parse_time"]


def parse_time(text: str, what: str) -> _dt.datetime:
    """An ISO 8601 date-time (UTC when no offset is given); ``ValueError`` names ``what``."""
    try:
        t = _dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: expected an ISO 8601 time such as 2026-12-07T17:32:27Z, "
                         f"got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def drop_measured_between(path: str | os.PathLike, since: _dt.datetime,
                          until: _dt.datetime | None = None, *, reason: str) -> dict:
    """Remove the rows of ``path`` measured in ``[since, until]`` (``until`` open: to now).

    Returns ``{"table", "dropped", "rows", "keys"}``. ``ValueError`` (nothing changed)
    when the table has no such rows, a row has no readable ``measured_at``, the reason
    is empty, or the window is reversed.
    """
    path = Path(path)
    if not reason or not reason.strip():
        raise ValueError("--reason: say why the rows are dropped (it is kept in the provenance)")
    if until is not None and until < since:
        raise ValueError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such table")
    with TableLock(path, "dropping rows of"):
        table = open_table(path)
        rows = table.read()  # refuses anything that is not a complete table, before any write
        raw = path.read_bytes().decode("utf-8")
        lines = raw.splitlines(keepends=True)
        if len(lines) != len(rows) + 1:
            raise ValueError(f"{path}: {len(lines) - 1} lines for {len(rows)} rows; validate it first")
        drop = []
        for i, r in enumerate(rows):
            t = parse_time(r.get("measured_at", ""), f"{path}: row {i + 2} measured_at")
            if t >= since and (until is None or t <= until):
                drop.append(i)
        window = f"{since.isoformat()} .. {until.isoformat() if until else 'now'}"
        if not drop:
            raise ValueError(f"{path}: no row was measured in {window}; nothing dropped")
        gone = set(drop)
        kept = [lines[0]] + [ln for i, ln in enumerate(lines[1:]) if i not in gone]
        prov_p = provenance_path(path)
        prov = json.loads(prov_p.read_text()) if prov_p.is_file() else {}
        write_atomic(path, "".join(kept))
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        prov.setdefault("dropped", []).append(
            {"at": now, "since": since.isoformat(), "until": until.isoformat() if until else None,
             "rows": len(drop), "reason": reason.strip()})
        prov.update(rows=len(rows) - len(drop), table_sha256=file_sha256(path), updated=now)
        write_json_atomic(prov_p, prov)
    return {"table": str(path), "dropped": len(drop), "rows": len(rows) - len(drop),
            "keys": [rows[i][table.key] for i in drop]}
