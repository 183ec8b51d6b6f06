"""Join the per-device part tables of a claimed job into the table itself.

The parts (``<stem>.parts/``, :mod:`.claims`) must share one clock and one estimator.
Reference-paired rows (``+ref``) are ratios to the reference operator times a base;
a part whose base differs from the table's is put on the table's base exactly (the
latency is linear in it; the raw ``wall_ms``/``cpu_ms`` stay). Rows already in the
table are skipped, so merging again after more measuring adds only the new rows.
The provenance lists every part (rows, sha256, host, base, scale) and every session
of every device, killed ones included; parts from hosts of different kinds are
merged but named in ``warnings`` and the provenance's ``mixed_hosts``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..tablelock import TableLock
from ..tables import (REFERENCE_OP, file_sha256, open_table, provenance_path, reference_base,
                      table_kind)
from .claims import ClaimError, claims_dir, claims_status, parts_dir
from .jobprov import now_iso, reconcile_killed, reference_summary

__all__ = ["merge_parts"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ClaimError(f"{path}: unreadable provenance ({exc})") from None


def merge_parts(table_path: str | os.PathLike) -> dict:
    """Append the rows of every part of ``table_path`` that it lacks; returns a summary
    (rows merged, already there, duplicates across parts, parts, warnings).

    Holds the table's write lock (:mod:`surrogate.tablelock`): refused at once while a
    measurement or another merge writes it. Parts are only read (their devices may still be
    appending: a torn last row is skipped); a file that is not a table is refused before
    anything is written."""
    path = Path(table_path)
    table_kind(path)  # names the expected file names on a bad one
    pdir = parts_dir(path)
    parts = sorted(pdir.glob("*.csv")) if pdir.is_dir() else []
    if not parts:
        raise ClaimError(f"{path}: no part tables in {pdir} (measure with --device first)")
    with TableLock(path, "merging into"):
        return _merge(path, pdir, parts)


def _common_timing(path: Path, pdir: Path, part_rows: dict[str, list[dict]],
                   have: tuple[str, str] | None) -> tuple[str, str]:
    """The one ``(clock, estimator)`` of the parts and the table; a ClaimError if they differ."""
    timings = {name: (r[0]["clock"], r[0]["estimator"]) for name, r in part_rows.items() if r}
    kinds = set(timings.values()) | ({have} if have else set())
    if len(kinds) > 1:
        raise ClaimError(f"{path}: its parts were timed with different clocks/estimators "
                         f"({', '.join(f'{k}: {v[0]}/{v[1]}' for k, v in sorted(timings.items()))}"
                         f"{f'; the table: {have[0]}/{have[1]}' if have else ''}); a table never "
                         f"mixes them")
    if not kinds:
        raise ClaimError(f"{path}: its parts in {pdir} hold no rows yet")
    return kinds.pop()


def _target_base(main: Any, clock: str, estimator: str, part_rows: dict[str, list[dict]],
                 provs: dict[str, dict]) -> Any:
    """The reference base every ``+ref`` part is put on: the table's, else the biggest part's."""
    target = reference_base(main, clock, estimator)
    if target is None:  # a new folder: the base of the part with the most rows
        biggest = max(part_rows, key=lambda name: len(part_rows[name]))
        target = provs[biggest].get("reference_base_ms")
    return target


def _collect_rows(main: Any, tables: list[tuple[str, Any]], part_rows: dict[str, list[dict]],
                  provs: dict[str, dict], done: set, paired: bool, target: Any
                  ) -> tuple[list[dict], int, dict[str, dict], dict[str, list[str]]]:
    """The parts' rows the table lacks (rescaled to ``target``), sorted by time of measuring.

    Returns ``(new rows, duplicates across parts, part info, {host: part names})``.
    """
    new, dupes, info, hosts = [], 0, {}, {}
    seen = set(done)
    for name, t in tables:
        rows = part_rows[name]
        base = provs[name].get("reference_base_ms")
        scale = float(target) / float(base) if paired and target and base else 1.0
        added = 0
        for r in rows:
            if r[main.key] in seen:
                dupes += r[main.key] not in done
                continue
            seen.add(r[main.key])
            new.append({**r, "median_ms": r["median_ms"] * scale})
            added += 1
        host = provs[name].get("host", {})
        hid = host.get("host_id") or host.get("cpu_model") or "?"
        hosts.setdefault(hid, []).append(name)
        info[name] = {"path": str(t.path), "rows": len(rows), "merged": added,
                      "sha256": file_sha256(t.path) if t.path.exists() else None,
                      "host_id": host.get("host_id"), "cpu_model": host.get("cpu_model"),
                      "reference_base_ms": base, "scaled_by": scale,
                      "sessions": len(provs[name].get("sessions", []))}
    new.sort(key=lambda r: (r.get("measured_at") or "", r[main.key]))
    return new, dupes, info, hosts


def _with_sessions(prov: dict, tables: list[tuple[str, Any]], provs: dict[str, dict]) -> dict:
    """The table's provenance (the first part's description if it has none) plus every
    part's sessions it does not list yet."""
    if not prov:  # a table made only of parts: the first part's description
        first = provs[tables[0][0]]
        prov = {k: v for k, v in first.items() if k not in ("sessions", "rows", "table_sha256",
                                                            "updated", "reference_ms")}
        prov["created"] = now_iso()
    known = {(s.get("device"), s.get("started")) for s in prov.get("sessions", [])}
    for name, _ in tables:
        for s in provs[name].get("sessions", []):
            s = {**s, "device": s.get("device") or name}
            if (s["device"], s.get("started")) not in known:
                prov.setdefault("sessions", []).append(s)
                known.add((s["device"], s.get("started")))
    return prov


def _claims_state(path: Path, prov: dict, warnings: list[str]) -> dict | None:
    """The claims' status (None without a plan), recorded in ``prov``; warns of chunks left."""
    cdir = claims_dir(path)
    status = claims_status(cdir) if (cdir / "plan.json").is_file() else None
    if status is not None:
        prov["claims"] = {k: status[k] for k in ("chunks", "done", "items", "chunk", "done_by_device")}
        if status["done"] < status["chunks"]:
            warnings.append(f"{status['chunks'] - status['done']} of {status['chunks']} chunks are "
                            f"not measured yet ({len(status['active'])} being measured now)")
    return status


def _merge(path: Path, pdir: Path, parts: list[Path]) -> dict:
    main = open_table(path)
    # part <stem>[_-]<device>.csv -> device
    tables = [(p.stem[len(path.stem) + 1:] or p.stem, open_table(p)) for p in parts]
    part_rows = {name: t.read(ignore_torn=True) for name, t in tables}
    clock, estimator = _common_timing(path, pdir, part_rows, main.timing())
    provs = {name: reconcile_killed(_read_json(provenance_path(t.path)), len(part_rows[name]))
             for name, t in tables}
    paired = estimator.endswith("+ref")
    target = _target_base(main, clock, estimator, part_rows, provs) if paired else None
    done = main.done_keys()
    prov_p = provenance_path(path)
    prov = _read_json(prov_p)
    if prov:  # a session that measured into the table itself and was killed
        prov = reconcile_killed(prov, len(done))
    new, dupes, info, hosts = _collect_rows(main, tables, part_rows, provs, done, paired, target)
    main.append(new)
    warnings = []
    if len(hosts) > 1:
        warnings.append(f"parts come from {len(hosts)} host kinds: "
                        + "; ".join(f"{h}: {', '.join(n)}" for h, n in sorted(hosts.items())))
    prov = _with_sessions(prov, tables, provs)
    rows = main.read()
    stamp = now_iso()
    prov.update({"parts": info, "merged": stamp, "updated": stamp, "rows": len(rows),
                 "table_sha256": file_sha256(path), "clock": clock, "estimator": estimator,
                 "reference_op": REFERENCE_OP.key(),
                 "mixed_hosts": sorted(hosts) if len(hosts) > 1 else None,
                 "wall_s_total": round(sum(s.get("wall_s", 0.0) or 0.0 for s in prov["sessions"]), 1)})
    if paired and target:
        prov["reference_base_ms"] = float(target)
    summary = reference_summary(rows, clock, estimator)
    if summary:
        prov["reference_ms"] = summary
    status = _claims_state(path, prov, warnings)
    write_json_atomic(prov_p, prov)
    return {"table": str(path), "merged": len(new), "already": len(done), "rows": len(rows),
            "duplicates": dupes, "parts": info, "warnings": warnings, "claims": status}
