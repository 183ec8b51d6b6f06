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

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HOME_ENV_VAR", "NETWORK_SETTINGS", "HostResult", "host_home", "host_tables_dir",
           "host_predictor_dir", "measure_host", "local_predictor", "reference_ms_here"]

#: the protocol of end-to-end network timings (tables, finalists, this host's calibration):
#: 3 interleaved rounds of 10 runs after 3 warm-ups (networks run for milliseconds)
NETWORK_SETTINGS = {"warmup": 3, "runs": 10, "rounds": 3}

HOME_ENV_VAR = "MNAS_HOME"


def host_home(host_id: str | None = None) -> Path:
    """``$MNAS_HOME/hosts/<host_id>`` (this host's id by default)."""
    from .host import host_identity

    base = os.environ.get(HOME_ENV_VAR)
    root = Path(base).expanduser() if base else Path.home() / ".local" / "share" / "mnas-surrogate"
    return root / "hosts" / (host_id or host_identity()["host_id"])


def host_tables_dir(host_id: str | None = None) -> Path:
    """Where this host's own latency tables live."""
    return host_home(host_id) / "latency_tables"


def host_predictor_dir(profile: str, space: str, host_id: str | None = None) -> Path:
    """Where this host's fitted predictor for (profile, space) lives."""
    return host_home(host_id) / "predictors" / profile / space


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


def measure_host(profile="cpu-litert", space: str = "anb", *, networks: int = 40, seed: int = 0,
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
    from .profiles import get_profile

    prof = get_profile(profile) if isinstance(profile, str) else profile
    if space not in space_names():
        raise ValueError(f"unknown space {space!r}; expected one of {', '.join(space_names())}")
    if isinstance(networks, bool) or not isinstance(networks, int) or networks < 3:
        raise ValueError(f"networks must be an integer >= 3 (the calibration needs them), got {networks!r}")
    ident = host_identity()
    base = Path(home) if home is not None else host_home(ident["host_id"])
    tables = base / "latency_tables"
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
    pdir = base / "predictors" / prof.name / space
    pdir.parent.mkdir(parents=True, exist_ok=True)
    save_predictor(est, pdir, profile=prof.name, extra={"host": ident, "fit": fit})
    res = HostResult(prof.name, space, ident["host_id"], str(tables), str(pdir), s_ops.total, len(y),
                     round(t1 - t0, 1), round(t2 - t1, 1), fit)
    from ..atomic import write_json_atomic

    write_json_atomic(base / f"summary_{prof.name}_{space}.json", res.as_dict())
    return res


def local_predictor(profile: str, space: str, host_id: str | None = None) -> Path | None:
    """This host's own predictor folder for (profile, space), or None when not measured yet."""
    p = host_predictor_dir(profile, space, host_id)
    return p if (p / "meta.json").is_file() else None


def reference_ms_here(profile="cpu-litert", *, rounds: int = 3, runs: int = 20) -> float:
    """A quick timing (about a second) of the reference operator on this host, in ms.

    Same clock and estimator as the tables (:data:`~.timing.DEFAULT_ESTIMATOR`), so it
    compares with a table's reference-operator time: a different or busier host shows.
    """
    from space.build import build_op, op_input_shape

    from ..tables import REFERENCE_OP
    from .clocks import DEFAULT_ESTIMATOR, estimate
    from .profiles import get_profile, make_runner

    prof = get_profile(profile) if isinstance(profile, str) else profile
    runner = make_runner(prof)
    try:
        h = runner.load(build_op(REFERENCE_OP), op_input_shape(REFERENCE_OP), name="reference")
        per_round = [estimate(runner.time_clocks(h, 5, runs).clock(prof.clock), DEFAULT_ESTIMATOR)
                     for _ in range(rounds)]
    finally:
        runner.unpin()
    return float(np.median(per_round))
