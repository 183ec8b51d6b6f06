"""Reading one latency-table file strictly, before anything is written to it.

A table is UTF-8 CSV text: its header (the current columns or the legacy ones), then
one complete row per line. :func:`read_rows` checks all of it first: a file that is not
such a table (binary, another header, a bad row) raises :class:`TableError` and is left
exactly as it is. Only then does it look at the last line when it has no newline:

* fewer fields than the header, each complete one valid: a torn row (a writer killed
  mid-row). ``repair`` cuts it off; ``ignore_torn`` leaves the file alone and skips it;
  otherwise it is an error;
* as many fields as the header and a valid row: a complete row whose newline is
  missing. It is kept (``repair`` adds the newline);
* anything else: not a table this project wrote; an error, nothing is written.

Also the row parser, the legacy clock fields and the CSV line writer that
:mod:`surrogate.tables` builds on.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Mapping

from .timingspec import CLOCKS, ESTIMATORS, LEGACY_CLOCK, LEGACY_ESTIMATOR

__all__ = ["LEGACY_CLOCK", "LEGACY_ESTIMATOR", "TableError", "legacy_clock_fields", "read_rows"]

#: what rows of tables without the clock columns were timed with

_INT_COLS = {"h", "w", "in_ch", "out_ch", "kernel", "stride", "expand", "groups", "expand_divisor",
             "num_classes", "n_runs", "n_rounds", "params", "madds"}
_FLOAT_COLS = {"se", "median_ms", "wall_ms", "cpu_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms",
               "iqr_ms", "cv", "rel_spread", "ref_ms"}
_BOOL_COLS = {"remeasured", "clock_diverged"}
_CHOICE_COLS = {"clock": CLOCKS, "estimator": ESTIMATORS}


class TableError(ValueError):
    """A table file that is corrupt, foreign or inconsistent (names file and line)."""


def legacy_clock_fields(row: Mapping) -> dict:
    """Clock columns for a row timed before they existed: wall clock, median estimator."""
    return {"wall_ms": row.get("median_ms", math.nan), "cpu_ms": math.nan, "clock": LEGACY_CLOCK,
            "estimator": LEGACY_ESTIMATOR, "clock_diverged": False}


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return "" if v is None else str(v)


def _csv_line(values: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def _value(col: str, text: str):
    """One field's value (ValueError on a bad one)."""
    if col in _INT_COLS:
        return int(text)
    if col in _FLOAT_COLS:
        return float(text) if text != "" else math.nan
    if col in _BOOL_COLS:
        if text not in ("0", "1"):
            raise ValueError(text)
        return text == "1"
    if col in _CHOICE_COLS and text not in _CHOICE_COLS[col]:
        raise ValueError(text)
    return text


def _parse_row(path: Path, lineno: int, header: list[str], raw: list[str]) -> dict:
    if len(raw) != len(header):
        raise TableError(f"{path}:{lineno}: expected {len(header)} fields, found {len(raw)}")
    row: dict = {}
    for col, text in zip(header, raw):
        try:
            row[col] = _value(col, text)
        except ValueError:
            raise TableError(f"{path}:{lineno}: column {col!r} has bad value {text!r}") from None
    med = row.get("median_ms")
    if med is not None and not (med > 0 and math.isfinite(med)):
        raise TableError(f"{path}:{lineno}: median_ms must be a positive number, got {med}")
    for col in ("wall_ms", "cpu_ms"):
        v = row.get(col, math.nan)
        if not (math.isnan(v) or (v > 0 and math.isfinite(v))):
            raise TableError(f"{path}:{lineno}: {col} must be a positive number or empty, got {v}")
    return row


def _not_a_table(path: Path, why: str) -> TableError:
    return TableError(f"{path}: not a latency table ({why}); it was left as it is: move it "
                      f"aside or use another file name or folder")


def _decode(path: Path, data: bytes, *, torn_ok: bool = False) -> str | None:
    """UTF-8 text of ``data``; None when only a multi-byte character cut at the end (a torn
    write, ``torn_ok``) keeps it from decoding."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if torn_ok and exc.reason == "unexpected end of data" and exc.end == len(data):
            return None
        raise _not_a_table(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _check_header(path: Path, header: list[str], columns: list[str], legacy: list[str],
                  key: str) -> bool:
    """Whether ``header`` is the legacy one; TableError when it is neither."""
    if header == columns or header == legacy:
        return header == legacy
    missing = [c for c in columns if c not in header]
    raise TableError(f"{path}:1: not a {key!r} latency table "
                     f"(missing columns {missing[:4]}{'...' if len(missing) > 4 else ''}"
                     f"{'; columns differ in order' if not missing else ''}); it was left as it is")


def _torn(path: Path, lineno: int, header: list[str], raw: list[str]) -> bool:
    """Whether a last line without newline is a torn row (fewer fields than the header, every
    complete one valid); False: a complete row. TableError: neither."""
    if len(raw) < len(header):
        for col, text in zip(header, raw[:-1]):
            try:
                _value(col, text)
            except ValueError:
                raise TableError(f"{path}:{lineno}: last line (no newline) has a bad value "
                                 f"{text!r} in column {col!r}: not a torn row of this table; it "
                                 f"was left as it is") from None
        return True
    _parse_row(path, lineno, header, raw)  # more fields or a bad value: not a row of ours
    return False


def read_rows(path: Path, columns: list[str], legacy: list[str], key: str, *,
              repair: bool = False, ignore_torn: bool = False) -> list[dict]:
    """All rows of the table file ``path`` (validated; see the module docstring).

    Legacy rows get :func:`legacy_clock_fields`; two clocks or estimators in one file, a
    duplicate key or a bad row are errors naming the line. Nothing is written unless the
    whole file is a valid table and ``repair`` is set.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    if not data:
        return []
    cut = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
    body, tail = data[:cut], data[cut:]
    text = _decode(path, body)
    tail_text = _decode(path, tail, torn_ok=True) if tail else ""
    try:
        lines = list(csv.reader(io.StringIO(text)))
        tail_raw = next(csv.reader(io.StringIO(tail_text)), []) if tail_text else []
    except csv.Error as exc:
        raise _not_a_table(path, f"not CSV text: {exc}") from None
    torn = tail_text is None
    if not lines:  # no complete line: a header torn while being written, or not a table
        header_line = _csv_line(columns).rstrip(b"\n")
        if not (header_line.startswith(tail) or _csv_line(legacy).startswith(tail)):
            raise _not_a_table(path, "no header line")
        header, rows_raw, legacy_file = None, [], False
        torn = True
    else:
        header, rows_raw = lines[0], lines[1:]
        legacy_file = _check_header(path, header, columns, legacy, key)
    rows, seen = [], set()

    def add(lineno: int, raw: list[str]) -> None:
        if not raw:
            raise TableError(f"{path}:{lineno}: empty line")
        row = _parse_row(path, lineno, header, raw)
        if legacy_file:
            row.update(legacy_clock_fields(row))
        if row[key] in seen:
            raise TableError(f"{path}:{lineno}: duplicate {key} {row[key]!r}")
        if rows and (row["clock"], row["estimator"]) != (rows[0]["clock"], rows[0]["estimator"]):
            raise TableError(f"{path}:{lineno}: row timed with clock {row['clock']!r} and "
                             f"estimator {row['estimator']!r}, but line 2 with clock "
                             f"{rows[0]['clock']!r} and estimator {rows[0]['estimator']!r}; "
                             f"a table never mixes clocks or estimators")
        seen.add(row[key])
        rows.append(row)

    for lineno, raw in enumerate(rows_raw, start=2):
        add(lineno, raw)
    last = len(lines) + 1
    if tail_text and header is not None:
        torn = _torn(path, last, header, tail_raw)
        if not torn:
            add(last, tail_raw)  # a complete row that lacks its newline: kept
    if not tail:
        return rows
    if not repair:
        if torn and not ignore_torn:
            raise TableError(f"{path}:{last}: torn last row (no newline, fewer fields than the "
                             f"header: a measurement killed mid-row); rerun the measurement to "
                             f"drop it")
        return rows
    with open(path, "r+b") as f:
        if torn:
            f.truncate(cut)
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
    return rows
