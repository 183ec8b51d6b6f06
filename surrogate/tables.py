"""Latency tables on disk: per-operator (``<space>_ops.csv``) and end-to-end
(``<space>_models.csv``), each with a JSON provenance file beside it.

Tables are append-only CSV written one complete row per ``write`` call and
fsynced, so a measurement killed at any moment leaves whole rows; a torn last row
(no newline, fewer fields than the header) is dropped on the next open, a complete one
that lacks its newline is kept. Reading validates the header and every row before
anything is written (:mod:`surrogate.tablefile`), and errors name the file and line. This module also owns the reference-operator figures read from them and the
project's one atomic file writer (:func:`write_atomic`, from :mod:`surrogate.atomic`); the ProxylessNAS /
Once-for-All LUT format is in :mod:`surrogate.lut`.

Clocks: ``median_ms`` is the latency under the row's ``clock`` (``cpu`` or
``wall``) and ``estimator`` (``median``, ``p25``, ``p10``, ``min`` per round, then
the median over rounds); ``wall_ms`` and ``cpu_ms`` keep both clocks and
``clock_diverged`` flags rows where they disagree by more than
:data:`CLOCK_DIVERGENCE`. A table never mixes clocks or estimators. Tables written
before these columns existed (legacy) read as clock ``wall``, estimator ``median``;
appending to one rewrites it once in the current format.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from space.arch import LayerConfig

from .atomic import atomic_path, now_iso, write_atomic, write_json_atomic  # noqa: F401 (re-exported)
from .paths import (DEFAULT_TABLES_DIR, TABLE_KINDS, parse_table_name,  # noqa: F401 (re-exported)
                    provenance_path, read_provenance, table_path, tables_dir)
from .tablefile import (_BOOL_COLS, _CHOICE_COLS, _FLOAT_COLS, _INT_COLS,  # noqa: F401 (re-exported)
                        TableError, _csv_line, _fmt, _parse_row, legacy_clock_fields, read_rows)
from .timingspec import LEGACY_CLOCK, LEGACY_ESTIMATOR, TimingSpec

__all__ = ["DEFAULT_TABLES_DIR", "MODELS_COLUMNS", "OPS_COLUMNS", "REFERENCE_OP", "TABLE_KINDS",
           "Table", "TableError", "clock_diverged", "file_sha256", "now_iso", "open_table", "op_row_key",
           "profile_reference_baseline", "provenance_path", "read_provenance", "read_table",
           "reference_baseline",
           "table_kind", "table_path", "table_timing", "tables_dir", "validate_table",
           "write_atomic", "write_json_atomic"]

TABLE_VERSION = 1

#: identity of an operator row (from :class:`LayerConfig`)
OP_KEY_COLUMNS = ["op_key", "op", "h", "w", "in_ch", "out_ch", "kernel", "stride", "expand",
                  "se", "residual", "groups", "act", "expand_divisor", "num_classes"]
#: how a row was timed: both clocks, which one ``median_ms`` is, the estimator, divergence
CLOCK_COLUMNS = ["wall_ms", "cpu_ms", "clock", "estimator", "clock_diverged"]
#: latency statistics of any row; ``median_ms`` is the latency (clock and estimator of the row)
STAT_COLUMNS = ["median_ms", *CLOCK_COLUMNS, "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms",
                "cv", "rel_spread", "n_runs", "n_rounds", "remeasured", "ref_ms", "measured_at"]
OPS_COLUMNS = OP_KEY_COLUMNS + STAT_COLUMNS
MODELS_COLUMNS = ["arch", "space", "source", "params", "madds"] + STAT_COLUMNS

#: ``clock_diverged`` is 1 when |wall_ms / cpu_ms - 1| exceeds this
CLOCK_DIVERGENCE = 0.10
#: the reference operator re-timed in every chunk (``ref_ms``), to track drift across a table
REFERENCE_OP = LayerConfig(op="mbconv", h=28, w=28, in_ch=40, out_ch=40, kernel=3, stride=1,
                           expand=6, se=0.0, skip="identity", groups=1, act="relu")


def op_row_key(lc: LayerConfig) -> dict:
    """The identity columns of an operator-table row."""
    return {"op_key": lc.key(), "op": lc.op, "h": lc.h, "w": lc.w, "in_ch": lc.in_ch,
            "out_ch": lc.out_ch, "kernel": lc.kernel, "stride": lc.stride, "expand": lc.expand,
            "se": lc.se, "residual": lc.residual, "groups": lc.groups, "act": lc.act,
            "expand_divisor": lc.expand_divisor, "num_classes": lc.num_classes}


def clock_diverged(wall_ms: float, cpu_ms: float, threshold: float = CLOCK_DIVERGENCE) -> bool:
    """Whether wall and CPU time disagree by more than ``threshold`` (False when one is missing).

    A diverged row was timed while something else ran on its core (wall > cpu)
    or by a runtime working off the calling thread (cpu > wall).
    """
    if not (math.isfinite(wall_ms) and math.isfinite(cpu_ms)) or cpu_ms <= 0:
        return False
    return abs(wall_ms / cpu_ms - 1.0) > threshold


@dataclass
class Table:
    """An append-only latency table keyed by one column (``op_key`` or ``arch``)."""

    path: Path
    columns: list[str]
    key: str

    @classmethod
    def ops(cls, path: str | os.PathLike) -> "Table":
        """A per-operator table at ``path``."""
        return cls(Path(path), OPS_COLUMNS, "op_key")

    @classmethod
    def models(cls, path: str | os.PathLike) -> "Table":
        """An end-to-end table at ``path``."""
        return cls(Path(path), MODELS_COLUMNS, "arch")

    @property
    def legacy_columns(self) -> list[str]:
        """The header of this kind of table before the clock columns existed."""
        return [c for c in self.columns if c not in CLOCK_COLUMNS]

    def is_legacy(self) -> bool:
        """Whether the file on disk has the legacy header (no clock columns)."""
        if not self.path.is_file():
            return False
        with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f), None)
        return header == self.legacy_columns

    def read(self, *, repair: bool = False, ignore_torn: bool = False) -> list[dict]:
        """All rows (validated; :func:`surrogate.tablefile.read_rows`). A torn final row (no
        newline, fewer fields than the header) is an error, or cut off with ``repair``, or
        skipped with ``ignore_torn``; a complete final row without its newline is kept (``repair``
        adds the newline). A file that is not such a table raises and is never written to.

        Legacy rows (no clock columns) get :func:`legacy_clock_fields`; rows of two
        clocks or estimators in one file are an error naming the line.
        """
        return read_rows(self.path, self.columns, self.legacy_columns, self.key, repair=repair,
                         ignore_torn=ignore_torn)

    def timing(self) -> tuple[str, str] | None:
        """(clock, estimator) of the rows on disk (legacy: wall, median); None when empty."""
        rows = self.read(repair=True)
        return (rows[0]["clock"], rows[0]["estimator"]) if rows else None

    def check_timing(self, clock: str, estimator: str) -> None:
        """Raise ValueError if the rows on disk were timed with another clock or estimator."""
        have = self.timing()
        if have is None or have == (clock, estimator):
            return
        legacy = " (legacy table without clock columns)" if self.is_legacy() else ""
        raise ValueError(
            f"{self.path}: its rows were timed with clock {have[0]!r} and estimator {have[1]!r}"
            f"{legacy}, this job asks for clock {clock!r} and estimator {estimator!r}; a table "
            f"never mixes clocks or estimators: write a new file (another --out folder, or "
            f"--table NAME for models) or continue this one with --clock {have[0]} "
            f"--estimator {have[1]}")

    def upgrade(self) -> bool:
        """Rewrite a legacy file in the current format (atomically); False if not legacy."""
        if not self.is_legacy():
            return False
        rows = self.read(repair=True)
        write_atomic(self.path, b"".join([_csv_line(self.columns)] + [
            _csv_line([_fmt(r[c]) for c in self.columns]) for r in rows]))
        return True

    def done_keys(self) -> set[str]:
        """Keys already measured (repairs a torn last row)."""
        return {r[self.key] for r in self.read(repair=True)}

    def append(self, rows: Iterable[Mapping]) -> int:
        """Append complete rows (header first if the file is new); fsync after each.

        Rows without any clock column are legacy (wall, median). Rows whose clock or
        estimator differ from each other or from the file's raise ValueError; a legacy
        file is upgraded to the current header first.
        """
        rows = [dict(r) if any(c in r for c in CLOCK_COLUMNS) else {**r, **legacy_clock_fields(r)}
                for r in rows]
        if not rows:
            return 0
        timings = {(r.get("clock"), r.get("estimator")) for r in rows}
        if len(timings) > 1:
            raise ValueError(f"{self.path}: rows to append mix clocks/estimators {sorted(timings)}")
        clock, estimator = timings.pop()
        if self.path.exists():
            self.check_timing(clock, estimator)
            self.upgrade()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        n = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if new:
                os.write(fd, _csv_line(self.columns))
            for r in rows:
                missing = [c for c in self.columns if c not in r]
                if missing:
                    raise ValueError(f"row for {r.get(self.key)!r} lacks columns {missing}")
                os.write(fd, _csv_line([_fmt(r[c]) for c in self.columns]))
                os.fsync(fd)
                n += 1
        finally:
            os.close(fd)
        return n

    def sha256(self) -> str:
        """sha256 of the table file."""
        return file_sha256(self.path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()



def table_kind(path: str | os.PathLike) -> str:
    """'ops' or 'models' from the file name (``<space>_ops.csv`` / ``<space>_models.csv``)."""
    try:
        return parse_table_name(path)[2]
    except ValueError:
        pass
    raise TableError(f"{path}: expected a file named <space>_ops[_tag].csv or "
                     f"<space>_models[_tag].csv")


def open_table(path: str | os.PathLike) -> Table:
    """The :class:`Table` for a path, by its kind."""
    return Table.ops(path) if table_kind(path) == "ops" else Table.models(path)


def read_table(path: str | os.PathLike):
    """A validated table as a pandas DataFrame: int, float and bool columns typed, and
    ``clock`` / ``estimator`` categoricals (legacy tables read as wall / median)."""
    from .frames import records_frame

    t = open_table(path)
    if not t.path.is_file():
        raise FileNotFoundError(f"{t.path}: no such latency table")
    return records_frame(t.read(), t.columns, ints=_INT_COLS, floats=_FLOAT_COLS,
                         bools=_BOOL_COLS, categories=_CHOICE_COLS)


def validate_table(path: str | os.PathLike) -> dict:
    """Validate a table and its provenance; returns a summary (raises TableError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table file at {path}")
    t = open_table(path)
    rows = t.read()
    if not rows:
        raise TableError(f"{path}: " + ("empty file (no header, no rows)" if path.stat().st_size == 0
                                        else "no rows (a header only)"))
    prov_p = provenance_path(path)
    prov = None
    problems = []
    if prov_p.is_file():
        try:
            prov = json.loads(prov_p.read_text())
        except json.JSONDecodeError as exc:
            raise TableError(f"{prov_p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(prov, dict):
            raise TableError(f"{prov_p}: not a provenance object")
        for k in REQUIRED_PROVENANCE:
            if k not in prov:
                problems.append(f"provenance lacks {k!r}")
        recorded, actual = prov.get("table_sha256"), t.sha256()
        sessions = [x for x in prov.get("sessions") or [] if isinstance(x, dict)]
        unfinished = bool(sessions) and sessions[-1].get("status") == "running"
        counted = prov.get("rows") if isinstance(prov.get("rows"), int) else None
        if unfinished and counted is not None and counted <= len(rows):
            # killed (or still measuring) after appending rows, before its next checkpoint
            problems.append(f"its last session (started {sessions[-1].get('started')}) did not "
                            f"finish: killed, or still measuring; {len(rows) - counted} rows were "
                            f"appended after its last checkpoint (resume it with mnas measure)")
        elif recorded and recorded != actual:
            raise TableError(f"{path}: sha256 {actual[:12]} does not match {recorded[:12]} in "
                             f"{prov_p.name}: the table changed after its last measuring session")
        elif counted is not None and counted != len(rows):
            problems.append(f"provenance counts {prov['rows']} rows, the table has {len(rows)}")
        if rows and "clock" in prov and (prov.get("clock"), prov.get("estimator")) != \
                (rows[0]["clock"], rows[0]["estimator"]):
            problems.append(f"provenance says clock {prov.get('clock')!r}, estimator "
                            f"{prov.get('estimator')!r}; rows say {rows[0]['clock']!r}, "
                            f"{rows[0]['estimator']!r}")
    else:
        problems.append(f"no provenance file {prov_p.name}")
    coverage = _coverage(path, rows, (prov or {}).get("space"))
    if coverage and coverage["missing"]:
        problems.append(f"covers {coverage['covered']} of the {coverage['needed']} operators of space "
                        f"{coverage['space']!r} ({coverage['missing']} missing: resume it with mnas "
                        f"measure ops)")
    meds = [r["median_ms"] for r in rows]
    return {"path": str(path), "kind": table_kind(path), "rows": len(rows), "coverage": coverage,
            "median_ms_min": min(meds) if meds else None,
            "median_ms_max": max(meds) if meds else None,
            "clock": rows[0]["clock"] if rows else None,
            "estimator": rows[0]["estimator"] if rows else None,
            "legacy": t.is_legacy(),
            "clock_diverged": sum(bool(r["clock_diverged"]) for r in rows),
            "sha256": t.sha256(), "provenance": prov is not None, "problems": problems}


def _coverage(path: Path, rows: list[dict], space: str | None) -> dict | None:
    """How many of its space's operators an operator table holds (None: not an ops table of a space)."""
    if table_kind(path) != "ops":
        return None
    from space.spaces import get_space, space_names

    name = space or parse_table_name(path)[1]
    if name not in space_names():
        return None
    need = {lc.key() for lc in get_space(name).operator_configs()}
    have = {r["op_key"] for r in rows}
    return {"space": name, "needed": len(need), "covered": len(need & have),
            "missing": len(need - have)}


REQUIRED_PROVENANCE = ("profile", "space", "host", "settings", "created", "updated", "rows",
                       "table_sha256")


# -- reference-operator figures --------------------------------------------------------
def reference_baseline(table: Table) -> float | None:
    """Median reference-operator time over the rows a table already has (None: none)."""
    if not table.path.exists():
        return None
    refs = [r["ref_ms"] for r in table.read() if np.isfinite(r.get("ref_ms", np.nan))]
    return float(np.median(refs)) if refs else None


def reference_base(table: Table, clock: str, estimator: str) -> float | None:
    """The base of a reference-paired table: its own, else its profile folder's (None: new).

    A table keeps the base it started with (its provenance's ``reference_base_ms``);
    a new one takes the row-weighted median base of the folder's tables timed with
    the same clock and estimator, so operator and network tables share one scale.
    """
    base = (read_provenance(table.path) or {}).get("reference_base_ms")
    if base:
        return float(base)
    return _weighted_median_over(table.path.parent, "reference_base_ms", clock, estimator)


def _weighted_median_over(directory: Path, field: str, clock: str | None,
                          estimator: str | None) -> float | None:
    """Row-weighted median of one provenance figure over a profile folder (None: none)."""
    meds, weights = [], []
    for prov in sorted(Path(directory).glob("*.provenance.json")):
        try:
            p = json.loads(prov.read_text())
            value = p[field]
            med = float(value["median"] if isinstance(value, dict) else value)
            rows = int(p.get("rows") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if clock is not None and p.get("clock", LEGACY_CLOCK) != clock:
            continue
        if estimator is not None and p.get("estimator", LEGACY_ESTIMATOR) != estimator:
            continue
        if p.get("reference_op") == REFERENCE_OP.key() and med > 0 and rows > 0:
            meds.append(med)
            weights.append(rows)
    if not meds:
        return None
    order = np.argsort(meds)
    cum = np.cumsum(np.asarray(weights, dtype=float)[order])
    return float(np.asarray(meds)[order][np.searchsorted(cum, cum[-1] / 2)])


def profile_reference_baseline(directory: str | os.PathLike, clock: str | None = None,
                               estimator: str | None = None) -> float | None:
    """The host's usual reference-operator time over every table of one profile folder.

    Row-weighted median of the per-table reference medians recorded in the
    provenance files (same reference operator only; with ``clock``/``estimator``
    only tables timed so, a provenance without them counting as wall/median). A
    new table's first chunk may fall in a slow episode of the host; judging drift
    against this pooled figure keeps such a chunk from becoming the table's
    yardstick. None: no table yet.
    """
    return _weighted_median_over(Path(directory), "reference_ms", clock, estimator)


def table_timing(path: str | os.PathLike) -> dict:
    """How a table was timed, from its provenance: ``clock``, ``estimator``, ``reference_base_ms``.

    Legacy provenance (no clock) reads as wall/median; missing or unreadable file: empty dict.
    """
    prov = read_provenance(path)
    if prov is None:
        return {}
    spec = TimingSpec.from_provenance(prov)
    return {"clock": spec.clock, "estimator": spec.estimator,
            "reference_base_ms": prov.get("reference_base_ms")}
