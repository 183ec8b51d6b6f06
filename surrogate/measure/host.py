"""Host identity: which kind of machine timed a latency table, and is it this one?

``host_identity()`` reads Linux's /proc and /sys (no torch, no subprocess) and
degrades to ``platform`` elsewhere. Its ``host_id`` hashes only what changes
latency (CPU model and revision, the ISA extensions XNNPACK dispatches on, cache
sizes), never the kernel, the date or the core count. ``host_match(table)`` reads
the provenance beside a table and says whether it came from this host kind.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backends import times_off_host
from .hostid import (ARM_ISA, X86_ISA, _differences, _read, compare_hosts, compute_host_id,  # noqa: F401
                     describe_host, host_identity)

__all__ = [
    "X86_ISA",
    "ARM_ISA",
    "HostMatch",
    "host_identity",
    "compute_host_id",
    "describe_host",
    "compare_hosts",
    "table_host",
    "host_match",
    "table_reference_ms",
    "profile_reference_ms",
    "predictor_table",
]

@dataclass
class HostMatch:
    """Whether a table was timed on this host kind (``same`` None: cannot be told)."""

    same: bool | None
    differences: list[str]
    table_host: dict
    this_host: dict
    reference_ms_table: float | None
    reference_ms_here: float | None
    table: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def reference_ratio(self) -> float | None:
        """Reference operator here / in the table (None when either is unknown)."""
        if self.reference_ms_table and self.reference_ms_here:
            return self.reference_ms_here / self.reference_ms_table
        return None

    def as_dict(self) -> dict:
        """JSON-ready, with the reference ratio."""
        return {**asdict(self), "reference_ratio": self.reference_ratio}

    def explain(self, space: str | None = None, reference: bool = True,
                subject: str = "the latency tables behind this predictor") -> list[str]:
        """A few plain lines for a user whose predictions disagree with timings
        (``reference``: add the reference operator's time here vs in the table)."""
        here, there = describe_host(self.this_host, True), describe_host(self.table_host, True)
        what = self.differences
        if "host_id" in self.table_host and "host_id" in self.this_host:  # the model is named already
            what = [t for _, f, t in _differences(self.table_host, self.this_host, "table host", "this host")
                    if f in ("isa", "caches")]
        what = "; " + "; ".join(what[:3]) + ("; ..." if len(what) > 3 else "") if what else ""
        lines = []
        if self.same is False:
            lines.append(f"{subject} were measured on another host "
                         f"({there} vs {here} here{what}); predictions are for that host.")
        elif self.same is None:
            why = self.differences[0] if self.differences else "no host identity recorded"
            lines.append(f"whether {subject} came from this host "
                         f"({here}) cannot be told: {why}; predictions are for the host that "
                         f"measured them.")
        else:
            lines.append(f"{subject} were measured on this host kind ({here}).")
        r = self.reference_ratio
        if r is not None and reference:
            lines.append(f"the reference operator ran {self.reference_ms_here:.3f} ms here vs "
                         f"{self.reference_ms_table:.3f} ms in the tables ({100 * (r - 1):+.0f}%).")
        if self.same is not True:
            lines.append("Measure this one: mnas measure host" + (f" --space {space}" if space else ""))
        return lines


def _load_provenance(table_path: Path) -> dict | None:
    from ..tables import read_provenance

    return read_provenance(table_path, strict=True)


def _identity_in(d: Any) -> dict | None:
    """The identity in a host_info dict (``d['host']``) or an identity itself."""
    if isinstance(d, dict):
        if "host_id" in d:
            return d
        if isinstance(d.get("host"), dict) and "host_id" in d["host"]:
            return d["host"]
    return None


def table_host(table_path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(latest host_info of a table's provenance, identities of every session that has one)."""
    prov = _load_provenance(Path(table_path)) or {}
    info = prov.get("host") if isinstance(prov.get("host"), dict) else {}
    sessions = [s for s in prov.get("sessions") or [] if isinstance(s, dict)]
    ids = [i for s in sessions if (i := _identity_in(s.get("host")))]
    if not ids and _identity_in(info):
        ids = [_identity_in(info)]
    return info, ids


def host_match(table_path: str | os.PathLike, *, reference_ms_here: float | None = None,
               this_host: dict | None = None) -> HostMatch:
    """Whether the table at ``table_path`` was timed on this host kind, from its provenance.

    ``same`` is None when the provenance predates host identity (only ``cpu_model``)
    or is missing; ``reference_ms_here`` is a fresh timing of the reference operator.
    """
    path = Path(table_path)
    if not path.is_file():
        raise FileNotFoundError(f"no latency table at {path}")
    here = this_host if this_host is not None else host_identity()
    ref = table_reference_ms(path)
    if _load_provenance(path) is None:
        return HostMatch(None, [f"no provenance beside {path.name}: the host that timed it is unknown"],
                         {}, here, ref, reference_ms_here, str(path))
    info, ids = table_host(path)
    prov = _load_provenance(path) or {}
    sessions = [s for s in prov.get("sessions") or [] if isinstance(s, dict)]
    notes = []
    if len({i.get("host_id") for i in ids}) > 1:
        notes.append(f"the table mixes timings from {len({i.get('host_id') for i in ids})} host kinds")
    if times_off_host((info.get("profile") or {}).get("runtime")) or info.get("adb_device"):
        dev = info.get("adb_device") or {}
        return HostMatch(None, [f"timed on an adb-attached phone ({dev.get('model', 'unknown model')}); "
                                f"this host's identity does not apply"], info, here, ref,
                         reference_ms_here, str(path), notes)
    if info.get("gpu") and here.get("gpus") is not None and info["gpu"] not in here["gpus"]:
        notes.append(f"GPU {info['gpu']} (table host) vs {', '.join(here['gpus']) or 'none'} (this host)")
    if ids and not any(_identity_in(s.get("host")) for s in sessions) and len(sessions) > 1:
        notes.append(f"only the latest of its {len(sessions)} sessions recorded a host identity")
    ident = ids[-1] if ids else None
    if ident is None:  # legacy: cpu_model and machine only; differing ones still tell
        old, name = info.get("cpu_model"), here.get("model_name")
        legacy = []
        if info.get("machine") and here.get("machine") and info["machine"] != here["machine"]:
            legacy.append(f"machine: {info['machine']} (table host) vs {here['machine']} (this host)")
        if old and name and here.get("arch") == "x86" and old.split() != name.split():
            legacy.append(f"model name: {old} (table host) vs {name} (this host)")
        if legacy:
            return HostMatch(False, legacy, info, here, ref, reference_ms_here, str(path), notes)
        return HostMatch(None, [f"its provenance predates host identity (it records only "
                                f"cpu_model {old or 'unknown'!r})"],
                         info, here, ref, reference_ms_here, str(path), notes)
    diffs = _differences(ident, here, "table host", "this host")
    same = False if any(k == "differs" for k, _, _ in diffs) else (None if diffs else True)
    return HostMatch(same, [t for _, _, t in diffs], ident, here, ref, reference_ms_here, str(path), notes)


# -- reference operator ---------------------------------------------------------------
def table_reference_ms(table_path: str | os.PathLike) -> float | None:
    """Median reference-operator time of a table (``tables.reference_baseline``), else the
    provenance's ``reference_ms.median``; None when neither is recorded."""
    from ..tables import TableError, open_table, reference_baseline

    path = Path(table_path)
    try:
        base = reference_baseline(open_table(path))
    except (TableError, OSError):
        base = None
    if base is None:
        try:
            prov = _load_provenance(path) or {}
            base = float(prov["reference_ms"]["median"])
        except (ValueError, KeyError, TypeError):
            base = None
    return base


def profile_reference_ms(profile: str, root: str | os.PathLike | None = None) -> float | None:
    """The profile's usual reference-operator time over its tables
    (``tables.profile_reference_baseline``); None when it has none."""
    from ..tables import profile_reference_baseline, tables_dir

    return profile_reference_baseline(tables_dir(root) / profile)


def predictor_table(predictor_dir: str | os.PathLike | None, profile: str, space: str) -> Path | None:
    """The operator table a saved predictor was fitted on (its ``meta.json`` source),
    else the profile's ``<space>_ops.csv`` / ``<space>_models.csv``; None if none exists."""
    from ..paths import resolve_source, table_path

    cands: list[Path] = []
    meta = _read(Path(predictor_dir) / "meta.json") if predictor_dir else None
    if meta:
        try:
            src = (json.loads(meta).get("table") or {}).get("source")
        except ValueError:
            src = None
        cands += resolve_source(src)
    cands += [table_path(profile, space, "ops"), table_path(profile, space, "models")]
    return next((c for c in cands if c.is_file()), None)
