"""Measure this machine in minutes: operator table, a few dozen networks, a fitted predictor.

A latency table describes one host. ``measure_host`` builds what a new host needs to
predict latency for a space, under a folder of its own keyed by the host identity
(:func:`~surrogate.measure.host.host_identity`), so tables of different machines
never mix:

    $MNAS_HOME/hosts/<host_id>/latency_tables/<profile>/<space>_ops.csv
    $MNAS_HOME/hosts/<host_id>/latency_tables/<profile>/<space>_models.csv
    $MNAS_HOME/hosts/<host_id>/predictors/<profile>/<space>/       (calibrated table sum)

``$MNAS_HOME`` defaults to ``~/.local/share/mnas-surrogate``. Every step resumes: a
killed run continues where it stopped (the tables are append-only, the predictor
folder is written atomically). With the direct LiteRT writer the conversion costs
milliseconds, so the timing is what takes the minutes.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..paths import HOME_ENV_VAR  # noqa: F401 (re-exported)
from .profiles import DEFAULT_PROFILE, as_profile

__all__ = ["HOME_ENV_VAR", "NETWORK_SETTINGS", "HostResult", "host_home", "host_tables_dir",
           "host_predictor_dir", "measure_host", "local_predictor", "host_timing_mismatch",
           "reference_ms_here"]

#: the protocol of end-to-end network timings (tables, finalists, this host's calibration):
#: 3 interleaved rounds of 10 runs after 3 warm-ups (networks run for milliseconds)
NETWORK_SETTINGS = {"warmup": 3, "runs": 10, "rounds": 3}


def _this_host() -> str:
    from .host import host_identity

    return host_identity()["host_id"]


def host_home(host_id: str | None = None) -> Path:
    """``$MNAS_HOME/hosts/<host_id>`` (this host's id by default; :func:`surrogate.paths.host_home`)."""
    return paths.host_home(host_id or _this_host())


def host_tables_dir(host_id: str | None = None) -> Path:
    """Where a host's own latency tables live (this host's by default)."""
    return paths.host_tables_dir(host_id or _this_host())


def host_predictor_dir(profile: str, space: str, host_id: str | None = None) -> Path:
    """Where a host's fitted predictor for (profile, space) lives (this host's by default)."""
    return paths.host_predictor_dir(profile, space, host_id or _this_host())


@dataclass
class HostResult:
    """What :func:`measure_host` measured and fitted, with its held-out error."""

    profile: str
    space: str
    host_id: str
    tables_dir: str
    predictor_dir: str
    ops: int
    networks: int
    ops_wall_s: float
    models_wall_s: float
    fit: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return asdict(self)


def _loo_affine(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of the affine calibration ``y ~ a * s + b``."""
    out = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        a, b = np.polyfit(s[keep], y[keep], 1)
        out[i] = a * s[i] + b
    return out


def measure_host(profile=DEFAULT_PROFILE, space: str = "anb", *, networks: int = 40, seed: int = 0,
                 home: str | os.PathLike | None = None, settings=None, progress: bool = True,
                 log=print) -> HostResult:
    """Measure ``space``'s operator table and ``networks`` random networks here, fit and save a predictor.

    The predictor is the operator-table sum calibrated on the networks
    (``TableSum(calibrate=True)``); its leave-one-out error over the networks is
    reported in ``fit``. ``home`` overrides the host folder (default :func:`host_home`).
    """
    from space.spaces import get_space, space_names

    from ..predict.estimators import TableSum
    from ..predict.metrics import latency_metrics
    from ..predict.optable import OpTable
    from ..predict.persist import save_predictor
    from ..tables import Table, table_path
    from .host import host_identity
    from .jobs import measure_models, measure_ops

    prof = as_profile(profile)
    if space not in space_names():
        raise ValueError(f"unknown space {space!r}; expected one of {', '.join(space_names())}")
    if isinstance(networks, bool) or not isinstance(networks, int) or networks < 3:
        raise ValueError(f"networks must be an integer >= 3 (the calibration needs them), got {networks!r}")
    ident = host_identity()
    base = Path(home) if home is not None else host_home(ident["host_id"])
    tables = paths.tables_under(base)
    stale = _stale_tables(tables, prof.name, space, _wanted_timing(prof, settings))
    if stale:
        _set_aside(base, stale, prof.name, space, log)
    log(f"measuring {space} on this host ({ident['host_id']}) with {prof.name}; tables in {tables}")
    t0 = time.perf_counter()
    s_ops = measure_ops(prof, space, out_dir=tables, settings=settings, progress=progress)
    t1 = time.perf_counter()
    if s_ops.interrupted:
        raise KeyboardInterrupt
    rng = np.random.default_rng(seed)
    sp = get_space(space)
    archs = [(sp.sample(rng), f"random:seed={seed}") for _ in range(networks)]
    import dataclasses

    from .timing import MeasureSettings

    net_settings = (MeasureSettings(**NETWORK_SETTINGS) if settings is None
                    else dataclasses.replace(settings, **NETWORK_SETTINGS))
    s_mod = measure_models(prof, space, archs, out_dir=tables, settings=net_settings, progress=progress)
    t2 = time.perf_counter()
    if s_mod.interrupted:
        raise KeyboardInterrupt
    op_path = table_path(prof.name, space, "ops", tables)
    rows = Table.models(table_path(prof.name, space, "models", tables)).read()
    a = [r["arch"] for r in rows]
    y = np.array([r["median_ms"] for r in rows])
    table = OpTable.from_csv(op_path)
    est = TableSum(space, table, calibrate=True).fit(a, y)
    raw = TableSum(space, table).fit().predict(a)
    loo = _loo_affine(raw, y)
    fit = {"model": "table-sum-cal", "networks": len(y), "coef": float(est.coef_),
           "intercept_ms": float(est.intercept_),
           "loo": latency_metrics(y, loo), "uncalibrated": latency_metrics(y, raw)}
    pdir = paths.predictor_under(base, prof.name, space)
    pdir.parent.mkdir(parents=True, exist_ok=True)
    save_predictor(est, pdir, profile=prof.name, extra={"host": ident, "fit": fit})
    res = HostResult(prof.name, space, ident["host_id"], str(tables), str(pdir), s_ops.total, len(y),
                     round(t1 - t0, 1), round(t2 - t1, 1), fit)
    from ..atomic import write_json_atomic

    write_json_atomic(paths.summary_under(base, prof.name, space), res.as_dict())
    return res


def _wanted_timing(profile, settings=None) -> tuple[str, str]:
    """(clock, estimator) a job of ``profile`` (a DeviceProfile) with ``settings`` would time with now."""
    from .jobs import resolve_clock

    return resolve_clock(profile, settings)[0].timing_spec.key


def _stale_tables(tables: Path, profile: str, space: str, want: tuple[str, str]) -> list[tuple[Path, tuple]]:
    """This host's tables for (profile, space) timed otherwise than ``want``, with their timing."""
    from ..tables import table_path, table_timing

    out = []
    for kind in ("ops", "models"):
        path = table_path(profile, space, kind, tables)
        t = table_timing(path) if path.is_file() else {}
        if t and (t["clock"], t["estimator"]) != want:
            out.append((path, (t["clock"], t["estimator"])))
    return out


def host_timing_mismatch(profile: str, space: str, host_id: str | None = None,
                         home: str | os.PathLike | None = None) -> str | None:
    """Why this host's saved tables for (profile, space) cannot serve the profile now, or None.

    A host folder measured before the profile's clock or estimator changed (say ``min``
    before ``min+ref``) describes this host in other units; it must be re-measured,
    never reused or appended to.
    """

    prof = as_profile(profile)
    name, want = prof.name, _wanted_timing(prof)
    base = Path(home) if home is not None else host_home(host_id)
    stale = _stale_tables(paths.tables_under(base), name, space, want)
    if not stale:
        return None
    path, have = stale[0]
    return (f"{path} was timed with clock {have[0]!r} and estimator {have[1]!r}; "
            f"{name} now times with clock {want[0]!r} and estimator {want[1]!r}")


def local_predictor(profile: str, space: str, host_id: str | None = None) -> Path | None:
    """This host's own predictor folder for (profile, space); None when not measured yet,
    or when its tables were timed with another clock or estimator than the profile's now
    (:func:`host_timing_mismatch`)."""
    p = host_predictor_dir(profile, space, host_id)
    if not (p / "meta.json").is_file():
        return None
    return None if host_timing_mismatch(profile, space, host_id) else p


def _set_aside(base: Path, stale: list[tuple[Path, tuple]], profile: str, space: str, log) -> Path:
    """Move stale tables (with provenance, parts, claims) and the predictor fitted on them
    to ``base/superseded/<stamp>_<clock>-<estimator>/``; returns that folder.

    Renames within the host folder only: nothing is deleted, the old measurements stay
    readable, and a kill between two renames leaves each file whole in one place.
    """
    from ..tables import provenance_path
    from .claims import claims_dir, parts_dir

    clock, est = stale[0][1]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = base / "superseded" / f"{stamp}_{clock}-{est.replace('+', '_')}"
    moves: list[tuple[Path, Path]] = []
    for path, _ in stale:
        rel = path.relative_to(base)
        for p in (path, provenance_path(path), parts_dir(path), claims_dir(path)):
            if p.exists():
                moves.append((p, dest / rel.parent / p.name))
    pdir = paths.predictor_under(base, profile, space)
    if pdir.exists():
        moves.append((pdir, paths.predictor_under(dest, profile, space)))
    summary = paths.summary_under(base, profile, space)
    if summary.exists():
        moves.append((summary, dest / summary.name))
    for src, dst in moves:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    log(f"this host's {profile} {space} tables were timed with clock {clock!r} and estimator "
        f"{est!r}: set aside in {dest}, measuring afresh")
    return dest


def reference_ms_here(profile=DEFAULT_PROFILE, *, rounds: int = 5, runs: int = 20) -> float:
    """A quick timing (about a second) of the reference operator on this host, in ms.

    Each round takes the tables' per-item estimator (:data:`~.clocks.DEFAULT_ESTIMATOR`)
    and the probe returns the fastest round: load on a shared host only ever slows a
    round, so the fastest one tells the host's kind, where a median of three rounds read
    a busy host as another kind (+147% with two test processes on two cores).
    """
    from space.build import build_op, op_input_shape

    from ..tables import REFERENCE_OP
    from .clocks import DEFAULT_ESTIMATOR, estimate
    from .profiles import make_runner

    prof = as_profile(profile)
    runner = make_runner(prof)
    try:
        h = runner.load(build_op(REFERENCE_OP), op_input_shape(REFERENCE_OP), name="reference")
        per_round = [estimate(runner.time_clocks(h, 5, runs).clock(prof.clock), DEFAULT_ESTIMATOR)
                     for _ in range(rounds)]
    finally:
        runner.unpin()
    return float(np.min(per_round))
