"""``docs/ARCHITECTURE.md`` has exactly one table row per module of the three packages:
adding, moving or removing a module without its row fails here, naming the module."""
from __future__ import annotations

import re
from pathlib import Path

import space

ROOT = Path(space.__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("space", "surrogate", "search")
_ROW = re.compile(r"^\| `([^`]+\.py)` \|", re.M)


def modules() -> set[str]:
    """Every Python module of the packages, as a path relative to the checkout."""
    return {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "__pycache__" not in p.parts}


def rows() -> list[str]:
    return _ROW.findall(DOC.read_text(encoding="utf-8"))


def test_every_module_has_one_row():
    have = rows()
    missing = sorted(modules() - set(have))
    assert not missing, f"modules without a row in {DOC.name}: {', '.join(missing)}"


def test_no_row_for_a_module_that_is_gone():
    gone = sorted(set(rows()) - modules())
    assert not gone, f"{DOC.name} has rows for modules that do not exist: {', '.join(gone)}"


def test_no_module_has_two_rows():
    seen: dict[str, int] = {}
    for r in rows():
        seen[r] = seen.get(r, 0) + 1
    twice = sorted(r for r, n in seen.items() if n > 1)
    assert not twice, f"modules with more than one row: {', '.join(twice)}"


def test_rows_are_read():
    """The row pattern matches this document's table format (a guard against a silent pass)."""
    assert len(rows()) >= 50
