"""Latency tables on disk: per-operator (``<space>_ops.csv``) and end-to-end
(``<space>_models.csv``), each with a JSON provenance file beside it.

Tables are append-only CSV written one complete row per ``write`` call and
fsynced, so a measurement killed at any moment leaves whole rows; a torn last line
(no newline) is dropped on the next open. Reading validates the header and every
row, and errors name the file and line. Also imports and exports the
ProxylessNAS / Once-for-All LUT format (YAML-like text keyed by
``expanded_conv-input:HxWxC-output:HxWxC-expand:e-kernel:k-stride:s-idskip:b``
with ``count``, ``mean`` and ``var`` in ms).

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
import hashlib
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from space.arch import LayerConfig

from .measure.clocks import CLOCKS, ESTIMATORS

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

#: what rows of tables without the clock columns were timed with
LEGACY_CLOCK, LEGACY_ESTIMATOR = "wall", "median"
#: ``clock_diverged`` is 1 when |wall_ms / cpu_ms - 1| exceeds this
CLOCK_DIVERGENCE = 0.10

_INT_COLS = {"h", "w", "in_ch", "out_ch", "kernel", "stride", "expand", "groups", "expand_divisor",
             "num_classes", "n_runs", "n_rounds", "params", "madds"}
_FLOAT_COLS = {"se", "median_ms", "wall_ms", "cpu_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms",
               "iqr_ms", "cv", "rel_spread", "ref_ms"}
_BOOL_COLS = {"remeasured", "clock_diverged"}
_CHOICE_COLS = {"clock": CLOCKS, "estimator": ESTIMATORS}


class TableError(ValueError):
    """A table file that is corrupt, foreign or inconsistent (names file and line)."""


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


def _parse_row(path: Path, lineno: int, header: list[str], raw: list[str]) -> dict:
    if len(raw) != len(header):
        raise TableError(f"{path}:{lineno}: expected {len(header)} fields, found {len(raw)}")
    row: dict = {}
    for col, text in zip(header, raw):
        try:
            if col in _INT_COLS:
                row[col] = int(text)
            elif col in _FLOAT_COLS:
                row[col] = float(text) if text != "" else math.nan
            elif col in _BOOL_COLS:
                if text not in ("0", "1"):
                    raise ValueError(text)
                row[col] = text == "1"
            elif col in _CHOICE_COLS and text not in _CHOICE_COLS[col]:
                raise ValueError(text)
            else:
                row[col] = text
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

    def read(self, *, repair: bool = False) -> list[dict]:
        """All rows (validated). ``repair`` drops a torn final line in place.

        Legacy rows (no clock columns) get :func:`legacy_clock_fields`; rows of two
        clocks or estimators in one file are an error naming the line.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            if not repair:
                line = data[:cut].count(b"\n") + 1
                raise TableError(f"{self.path}:{line}: torn last row (no newline); rerun the "
                                 f"measurement to repair it")
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TableError(f"{self.path}: not a UTF-8 text table ({exc.reason})") from None
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
        except StopIteration:
            return []
        legacy = header == self.legacy_columns
        if header != self.columns and not legacy:
            missing = [c for c in self.columns if c not in header]
            raise TableError(f"{self.path}:1: not a {self.key!r} latency table "
                             f"(missing columns {missing[:4]}{'...' if len(missing) > 4 else ''}"
                             f"{'; columns differ in order' if not missing else ''})")
        rows, seen = [], set()
        for lineno, raw in enumerate(reader, start=2):
            if not raw:
                raise TableError(f"{self.path}:{lineno}: empty line")
            row = _parse_row(self.path, lineno, header, raw)
            if legacy:
                row.update(legacy_clock_fields(row))
            if row[self.key] in seen:
                raise TableError(f"{self.path}:{lineno}: duplicate {self.key} {row[self.key]!r}")
            if rows and (row["clock"], row["estimator"]) != (rows[0]["clock"], rows[0]["estimator"]):
                raise TableError(f"{self.path}:{lineno}: row timed with clock {row['clock']!r} and "
                                 f"estimator {row['estimator']!r}, but line 2 with clock "
                                 f"{rows[0]['clock']!r} and estimator {rows[0]['estimator']!r}; "
                                 f"a table never mixes clocks or estimators")
            seen.add(row[self.key])
            rows.append(row)
        return rows

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
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_csv_line(self.columns))
                for r in rows:
                    f.write(_csv_line([_fmt(r[c]) for c in self.columns]))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
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


def _csv_line(values: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().encode("utf-8")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def provenance_path(table_path: str | os.PathLike) -> Path:
    """Path of the provenance JSON beside a table."""
    p = Path(table_path)
    return p.with_name(p.stem + ".provenance.json")


def table_kind(path: str | os.PathLike) -> str:
    """'ops' or 'models' from the file name (``<space>_ops.csv`` / ``<space>_models.csv``)."""
    name = Path(path).name
    if re.search(r"_ops(_[A-Za-z0-9-]+)?\.csv$", name):
        return "ops"
    if re.search(r"_models(_[A-Za-z0-9-]+)?\.csv$", name):
        return "models"
    raise TableError(f"{path}: expected a file named <space>_ops[_tag].csv or "
                     f"<space>_models[_tag].csv")


def open_table(path: str | os.PathLike) -> Table:
    """The :class:`Table` for a path, by its kind."""
    return Table.ops(path) if table_kind(path) == "ops" else Table.models(path)


def validate_table(path: str | os.PathLike) -> dict:
    """Validate a table and its provenance; returns a summary (raises TableError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table file at {path}")
    t = open_table(path)
    rows = t.read()
    prov_p = provenance_path(path)
    prov = None
    problems = []
    if prov_p.is_file():
        try:
            prov = json.loads(prov_p.read_text())
        except json.JSONDecodeError as exc:
            raise TableError(f"{prov_p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        for k in REQUIRED_PROVENANCE:
            if k not in prov:
                problems.append(f"provenance lacks {k!r}")
        if rows and "clock" in prov and (prov.get("clock"), prov.get("estimator")) != \
                (rows[0]["clock"], rows[0]["estimator"]):
            problems.append(f"provenance says clock {prov.get('clock')!r}, estimator "
                            f"{prov.get('estimator')!r}; rows say {rows[0]['clock']!r}, "
                            f"{rows[0]['estimator']!r}")
    else:
        problems.append(f"no provenance file {prov_p.name}")
    meds = [r["median_ms"] for r in rows]
    return {"path": str(path), "kind": table_kind(path), "rows": len(rows),
            "median_ms_min": min(meds) if meds else None,
            "median_ms_max": max(meds) if meds else None,
            "clock": rows[0]["clock"] if rows else None,
            "estimator": rows[0]["estimator"] if rows else None,
            "legacy": t.is_legacy(),
            "clock_diverged": sum(bool(r["clock_diverged"]) for r in rows),
            "sha256": t.sha256(), "provenance": prov is not None, "problems": problems}


REQUIRED_PROVENANCE = ("profile", "space", "host", "settings", "created", "updated", "rows",
                       "table_sha256")


# -- ProxylessNAS / Once-for-All LUT format -------------------------------------------
_LUT_KEY = re.compile(
    r"^expanded_conv-input:(\d+)x(\d+)x(\d+)-output:(\d+)x(\d+)x(\d+)-expand:(\d+)-kernel:(\d+)"
    r"-stride:(\d+)-idskip:([01])(?:-se:0-hs:0)?$")
_ANY_LUT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-input:\d+x\d+x\d+(-[A-Za-z_]+:[0-9x.]+)*$")


def lut_key(row: Mapping) -> str | None:
    """OFA key of an operator row (None for ops the format cannot express)."""
    if row["op"] != "mbconv" or float(row["se"]) != 0.0 or int(row["groups"]) != 1 \
            or row["residual"] == "pool":
        return None
    out_h = (int(row["h"]) + 2 * (int(row["kernel"]) // 2) - int(row["kernel"])) // int(row["stride"]) + 1
    return (f"expanded_conv-input:{row['h']}x{row['w']}x{row['in_ch']}"
            f"-output:{out_h}x{out_h}x{row['out_ch']}-expand:{row['expand']}"
            f"-kernel:{row['kernel']}-stride:{row['stride']}"
            f"-idskip:{1 if row['residual'] == 'add' else 0}")


def export_lut(rows: Iterable[Mapping]) -> tuple[str, int]:
    """Rows -> OFA LUT text; returns (text, number of rows it could not express)."""
    lines, skipped = [], 0
    for r in rows:
        k = lut_key(r)
        if k is None:
            skipped += 1
            continue
        n = int(r["n_runs"])
        var = float(r["std_ms"]) ** 2
        lines.append(f"{k}:\n  count: {n}\n  mean: {float(r['median_ms'])!r}\n  var: {var!r}\n")
    return "".join(lines), skipped


def parse_lut(text: str, source: str = "<lut>") -> dict[str, dict]:
    """OFA LUT text (the YAML subset those files use) -> ``{key: {count, mean, var}}``."""
    out: dict[str, dict] = {}
    cur = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            key = line.rstrip().rstrip(":").strip()
            if not _ANY_LUT_KEY.match(key):
                raise TableError(f"{source}:{lineno}: not a LUT key such as "
                                 f"'expanded_conv-input:HxWxC-output:...': {key[:80]!r}")
            if key in out:
                raise TableError(f"{source}:{lineno}: duplicate LUT key {key!r}")
            cur = out.setdefault(key, {})
            continue
        if cur is None:
            raise TableError(f"{source}:{lineno}: value before any key")
        name, _, val = line.strip().partition(":")
        if name not in ("count", "mean", "var"):
            raise TableError(f"{source}:{lineno}: unknown LUT field {name!r} (count, mean, var)")
        try:
            cur[name] = int(val) if name == "count" else float(val)
        except ValueError:
            raise TableError(f"{source}:{lineno}: {name} must be a number, got {val.strip()!r}") from None
    for k, v in out.items():
        if set(v) != {"count", "mean", "var"}:
            raise TableError(f"{source}: entry {k!r} lacks {sorted({'count', 'mean', 'var'} - set(v))}")
    return out


def lut_to_rows(lut: Mapping[str, Mapping], act: str = "relu") -> list[dict]:
    """OFA LUT ``expanded_conv`` entries -> operator-table rows (MBConv, no SE, groups 1).

    Other entries (``Conv``, ``Conv_1``, ``AvgPool2D``, ``Logits``, SE or h-swish
    variants) have no operator-table equivalent and are left out; compare
    ``len(lut)`` with the result to see how many.
    """
    rows = []
    for key, v in lut.items():
        m = _LUT_KEY.match(key)
        if not m:
            continue
        h, w, cin, _, _, cout, e, k, s, skip = (int(x) for x in m.groups())
        res = "add" if skip and s == 1 and cin == cout else "none"
        lc = LayerConfig(op="mbconv", h=h, w=w, in_ch=cin, out_ch=cout, kernel=k, stride=s,
                         expand=e, se=0.0, skip="identity" if res == "add" else "none", groups=1,
                         act=act)
        std = math.sqrt(max(float(v["var"]), 0.0))
        mean = float(v["mean"])
        rows.append({**op_row_key(lc), "median_ms": mean, "wall_ms": mean, "cpu_ms": math.nan,
                     "clock": LEGACY_CLOCK, "estimator": LEGACY_ESTIMATOR, "clock_diverged": False,
                     "mean_ms": mean, "std_ms": std,
                     "p10_ms": math.nan, "p90_ms": math.nan, "iqr_ms": math.nan,
                     "cv": std / mean if mean > 0 else math.nan, "rel_spread": math.nan,
                     "n_runs": int(v["count"]), "n_rounds": 1, "remeasured": False,
                     "ref_ms": math.nan, "measured_at": "imported"})
    return rows
