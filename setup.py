"""Build step: ship ``data/latency_tables/`` (the source of truth) as package data.

The tables land in the wheel as ``surrogate/data/latency_tables/``, which
:func:`surrogate.tables.tables_dir` reads through ``importlib.resources`` when the
package runs outside the checkout. Everything else is configured in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TABLES = Path(__file__).resolve().parent / "data" / "latency_tables"


class build_py_with_tables(build_py):
    """``build_py`` plus the shipped latency tables (CSV and provenance JSON only)."""

    def run(self) -> None:
        super().run()
        dst = Path(self.build_lib) / "surrogate" / "data" / "latency_tables"
        shutil.copytree(TABLES, dst, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if not (
                            (Path(d) / n).is_dir() or n.endswith((".csv", ".json")))
                            or n.startswith(".")])


setup(cmdclass={"build_py": build_py_with_tables})
