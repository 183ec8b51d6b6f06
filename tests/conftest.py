"""Shared fixtures: where the read-only benchmark data lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def benchmarks_dir() -> Path:
    """``$MNAS_BENCHMARKS_DIR`` or ``../shared/benchmarks`` beside the checkout."""
    env = os.environ.get("MNAS_BENCHMARKS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    d = benchmarks_dir()
    if not d.is_dir():
        pytest.skip(f"benchmark data folder {d} is absent (set MNAS_BENCHMARKS_DIR)")
    return d


@pytest.fixture(scope="session")
def anb_csv(bench_dir) -> Path:
    p = bench_dir / "accel_nasbench" / "anb_results.csv"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def macro_json(bench_dir) -> Path:
    p = bench_dir / "nas_bench_macro" / "nas-bench-macro_cifar10.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


@pytest.fixture(scope="session")
def fbnet_csv(bench_dir) -> Path:
    p = bench_dir / "help_fbnet" / "fbnet_latency.csv"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


# PostgreSQL for the storage tests: a session server in a temporary folder (tests/pgserver.py)
from pgserver import postgres_server  # noqa: E402,F401
