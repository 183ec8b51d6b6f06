"""Every location and name: latency tables (shipped, ``$MNAS_TABLES_DIR``, file names),
portable sources, shipped predictors and each host kind's folders under ``$MNAS_HOME``.

``<root>/<profile>/<space>_<kind>[_<tag>].csv``, ``kind`` one of :data:`TABLE_KINDS`;
the root is an explicit path, else ``$MNAS_TABLES_DIR``, else the shipped tables
(:data:`DEFAULT_TABLES_DIR`: the checkout's ``data/latency_tables``, the source of
truth, or the copy installed as package data).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["DEFAULT_PROFILE", "DEFAULT_TABLES_DIR", "HOME_ENV_VAR", "SHIPPED_PREDICTORS_DIR", "TABLE_KINDS", "host_home",
           "host_predictor_dir", "host_tables_dir", "mnas_home", "named_table_path", "parse_table_name",
           "plain_name",
           "portable_source", "predictor_under", "provenance_path", "read_provenance", "resolve_source", "shipped_predictor_dir",
           "summary_under", "table_path", "tables_dir", "tables_under"]


def _default_tables_dir() -> Path:
    """The checkout's ``data/latency_tables`` (source of truth), else the installed copy."""
    repo = Path(__file__).resolve().parents[1] / "data" / "latency_tables"
    if repo.is_dir():
        return repo
    from importlib.resources import files  # package data, mapped in by setup.py

    return Path(str(files("surrogate") / "data" / "latency_tables"))


DEFAULT_TABLES_DIR = _default_tables_dir()
TABLE_KINDS = ("ops", "models")
_TAG = r"[A-Za-z0-9-]+"  # the optional ``_<tag>`` of a table file name


def tables_dir(path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else ``$MNAS_TABLES_DIR``, else the shipped tables (:data:`DEFAULT_TABLES_DIR`)."""
    if path is not None:
        return Path(path)
    env = os.environ.get("MNAS_TABLES_DIR")
    return Path(env) if env else DEFAULT_TABLES_DIR


def table_path(profile: str, space: str, kind: str, root: str | os.PathLike | None = None,
               tag: str | None = None) -> Path:
    """``<root>/<profile>/<space>_<kind>[_<tag>].csv``; ``root`` defaults to :func:`tables_dir`."""
    if kind not in TABLE_KINDS:
        raise ValueError(f"table kind must be one of {', '.join(TABLE_KINDS)}, got {kind!r}")
    if tag is not None and not re.fullmatch(_TAG, tag):
        raise ValueError(f"table tag must be letters, digits and '-', got {tag!r}")
    return tables_dir(root) / profile / f"{space}_{kind}{f'_{tag}' if tag else ''}.csv"


def named_table_path(profile: str, name: str, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<profile>/<name>``: a table under a file name of its own (a plain name)."""
    return tables_dir(root) / profile / plain_name(name, "table name")


def plain_name(name: str, what: str = "name") -> str:
    """``name`` when it is a plain file name, used as a path inside one folder; ValueError when
    it has a folder part, is absolute, is ``.``/``..`` or is empty."""
    seps = [c for c in ("/", "\\", os.sep, os.altsep or "/") if c in name]
    if not name or name in (".", "..") or seps or "\0" in name:
        raise ValueError(f"{what} must be a plain file name (no folder, no '..'), got {name!r}")
    return name


# -- table file names ------------------------------------------------------------------
_NAME = re.compile(r"(?P<space>.+?)_(?P<kind>ops|models)(?:_(?P<tag>[A-Za-z0-9-]+))?\.csv")


def parse_table_name(path: str | os.PathLike) -> tuple[str | None, str, str, str | None]:
    """``(profile, space, kind, tag)`` of ``<root>/<profile>/<space>_<kind>[_<tag>].csv``.

    ``profile`` is the parent folder's name (None for a bare file name). ``ValueError``
    names the file when its name is not a table name.
    """
    p = Path(path)
    m = _NAME.fullmatch(p.name)
    if not m:
        raise ValueError(f"{p.name}: not a table name (expected <space>_ops.csv or "
                         f"<space>_models[_<tag>].csv)")
    profile = p.parent.name if p.parent.name not in ("", ".") else None
    return profile, m["space"], m["kind"], m["tag"]


# -- provenance beside a table ---------------------------------------------------------
def provenance_path(table_path: str | os.PathLike) -> Path:
    """Path of the provenance JSON beside a table."""
    p = Path(table_path)
    return p.with_name(p.stem + ".provenance.json")


def read_provenance(table_path: str | os.PathLike, strict: bool = False) -> dict | None:
    """The provenance object beside a table; None when there is none. An unreadable file or
    one that holds no JSON object is None too, or with ``strict`` a ValueError naming it."""
    p = provenance_path(table_path)
    if not p.is_file():
        return None
    try:
        prov = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if strict:
            raise ValueError(f"{p}: unreadable provenance JSON ({exc})") from None
        return None
    if not isinstance(prov, dict):
        if strict:
            raise ValueError(f"{p}: provenance must be a JSON object, got {type(prov).__name__}")
        return None
    return prov


# -- portable sources (shipped metadata names no machine-specific path) ----------------
_PORTABLE = ("data", "latency_tables")


def portable_source(source: str | os.PathLike | None) -> str | None:
    """A table path as ``data/latency_tables/...`` when it lies in such a folder, else as given."""
    if not source:
        return None if source is None else str(source)
    parts = Path(source).parts
    for i in range(len(parts) - 1):
        if parts[i:i + 2] == _PORTABLE:
            return "/".join(parts[i:])
    return str(source)


def resolve_source(source: str | os.PathLike | None) -> list[Path]:
    """Where a (possibly portable) table source may be, best first: ``$MNAS_TABLES_DIR``, then
    the shipped tables, for a ``data/latency_tables/...`` source; else the path itself."""
    if not source:
        return []
    p = Path(source)
    if not p.is_absolute() and p.parts[:2] == _PORTABLE:
        rest = Path(*p.parts[2:])
        return list(dict.fromkeys([tables_dir() / rest, DEFAULT_TABLES_DIR / rest]))
    return [p]


# -- shipped predictors and this host's folders ----------------------------------------
#: the shipped predictors: ``<dir>/<profile>/<space>/``
SHIPPED_PREDICTORS_DIR = Path(__file__).resolve().parent / "data" / "predictors"
HOME_ENV_VAR = "MNAS_HOME"
#: the device profile every command and path defaults to (``surrogate.measure.profiles`` defines it)
DEFAULT_PROFILE = "cpu-litert"


def shipped_predictor_dir(profile: str, space: str) -> Path:
    """The folder of the predictor shipped for ``(profile, space)`` (it may not exist)."""
    return SHIPPED_PREDICTORS_DIR / profile / space


def mnas_home() -> Path:
    """``$MNAS_HOME``, else ``~/.local/share/mnas-surrogate``."""
    base = os.environ.get(HOME_ENV_VAR)
    return Path(base).expanduser() if base else Path.home() / ".local" / "share" / "mnas-surrogate"


def host_home(host_id: str) -> Path:
    """``<mnas_home>/hosts/<host_id>``: everything this library keeps about one host kind."""
    return mnas_home() / "hosts" / plain_name(host_id, "host id")


def host_tables_dir(host_id: str) -> Path:
    """The tables root of a host kind (``<profile>/<space>_<kind>.csv`` below it)."""
    return tables_under(host_home(host_id))


def host_predictor_dir(profile: str, space: str, host_id: str) -> Path:
    """Where a host kind's fitted predictor for ``(profile, space)`` lives."""
    return predictor_under(host_home(host_id), profile, space)


def tables_under(home: str | os.PathLike) -> Path:
    """The tables root of a host folder ``home`` (:func:`host_home`, or one given instead)."""
    return Path(home) / "latency_tables"


def predictor_under(home: str | os.PathLike, profile: str, space: str) -> Path:
    """The predictor folder for ``(profile, space)`` of a host folder ``home``."""
    return Path(home) / "predictors" / profile / space


def summary_under(home: str | os.PathLike, profile: str, space: str) -> Path:
    """The ``mnas measure host`` summary of ``(profile, space)`` in a host folder ``home``."""
    return Path(home) / f"summary_{profile}_{space}.json"
