"""Where latency tables live: the shipped folder, ``$MNAS_TABLES_DIR``, and file names.

``<root>/<profile>/<space>_<kind>[_<tag>].csv``, ``kind`` one of :data:`TABLE_KINDS`;
the root is an explicit path, else ``$MNAS_TABLES_DIR``, else the shipped tables
(:data:`DEFAULT_TABLES_DIR`: the checkout's ``data/latency_tables``, the source of
truth, or the copy installed as package data).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DEFAULT_TABLES_DIR", "TABLE_KINDS", "plain_name", "table_path", "tables_dir"]


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


def plain_name(name: str, what: str = "name") -> str:
    """``name`` when it is a plain file name, used as a path inside one folder; ValueError when
    it has a folder part, is absolute, is ``.``/``..`` or is empty."""
    seps = [c for c in ("/", "\\", os.sep, os.altsep or "/") if c in name]
    if not name or name in (".", "..") or seps or "\0" in name:
        raise ValueError(f"{what} must be a plain file name (no folder, no '..'), got {name!r}")
    return name
