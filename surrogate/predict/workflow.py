"""Fitting and evaluating predictors on the shipped tables of a (profile, space).

The end-to-end table is split deterministically by a hash of the architecture
string: about 20% of rows (``is_test``) are never used for fitting, whatever the
table grows to, so ``mnas eval`` always reports on timings the shipped and freshly
fitted predictors have not seen.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Collection

import numpy as np

from ..paths import DEFAULT_PROFILE, SHIPPED_PREDICTORS_DIR, shipped_predictor_dir
from ..tables import Table
from .estimators import FlopsLinear, LatencyModel, ResidualLatency, TableSum
from .metrics import latency_metrics
from .optable import OpTable

TEST_SHARE = 5  # 1 in 5 rows is held out
PREDICTORS_DIR = SHIPPED_PREDICTORS_DIR  # the old name
DEFAULT_MODEL = {"default": "residual-xgb"}
MODEL_CHOICES = ("flops-linear", "table-sum", "table-sum-cal", "xgb", "xgb-l1", "mlp", "ridge",
                 "huber", "residual-xgb", "residual-xgb-l1", "residual-ridge", "residual-huber",
                 "residual-mlp")


def is_test(arch: str) -> bool:
    """Whether an architecture string belongs to the held-out split."""
    return int(hashlib.sha1(arch.encode()).hexdigest()[:8], 16) % TEST_SHARE == 0


def load_timings(profile: str, space: str, root: str | os.PathLike | None = None, *,
                 normalise: bool = False) -> tuple[list[str], np.ndarray]:
    """Architecture strings and median latencies of ``<space>_models.csv``.

    ``normalise=True`` rescales each row by ``baseline / ref_ms``: its chunk's reference-
    operator median against the table's median reference time. This takes out host
    drift (the whole machine running a few percent slower for a while), which is the
    larger part of run-to-run differences on a shared machine
    (``bench/repeatability.py``). Rows without a reference timing are refused.
    """
    from ..tables import table_path

    path = table_path(profile, space, "models", root)
    if not path.is_file():
        raise FileNotFoundError(f"no end-to-end table for profile {profile!r} and space {space!r} at "
                                f"{path}; measure it with: mnas measure models --profile {profile} "
                                f"--space {space} --random 300")
    rows = Table.models(path).read()
    y = np.array([r["median_ms"] for r in rows])
    if normalise:
        ref = np.array([r.get("ref_ms", np.nan) for r in rows], dtype=float)
        bad = np.flatnonzero(~(np.isfinite(ref) & (ref > 0)))
        if len(bad):
            raise ValueError(f"{path}: line {int(bad[0]) + 2} has no reference-operator timing "
                             f"(ref_ms); cannot normalise for drift")
        y = y * (np.median(ref) / ref)  # every row has one: the table's reference baseline
    return [r["arch"] for r in rows], y


def timings_frame(profile: str, space: str, root: str | os.PathLike | None = None, *,
                  normalise: bool = False):
    """:func:`load_timings` as a pandas DataFrame: ``arch``, ``latency_ms`` and ``test``
    (the held-out split of :func:`is_test`), plus the end-to-end table's typed columns."""
    from ..tables import read_table, table_path

    archs, y = load_timings(profile, space, root, normalise=normalise)
    df = read_table(table_path(profile, space, "models", root))
    df.insert(1, "latency_ms", y)
    df.insert(2, "test", [is_test(a) for a in archs])
    df.attrs.update({"profile": profile, "space": space, "normalised": normalise})
    return df


def evaluation_frame(result: dict):
    """An :func:`evaluate_on_tables` result as a DataFrame: one row per predictor
    (``model`` first, then the baselines) with its held-out metrics."""
    from ..frames import require_pandas

    pd = require_pandas()
    metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and k != "train_rows"}
    rows = [{"predictor": result.get("predictor", "model"), "role": "model", **metrics}]
    rows += [{"predictor": k, "role": "baseline", **v} for k, v in result.get("baselines", {}).items()]
    df = pd.DataFrame(rows)
    df.attrs.update({k: result.get(k) for k in ("profile", "space", "train_rows")})
    return df


def split(archs: list[str], y: np.ndarray):
    """(train archs, train y, test archs, test y) by :func:`is_test`."""
    test = np.array([is_test(a) for a in archs])
    a = np.array(archs, dtype=object)
    return list(a[~test]), y[~test], list(a[test]), y[test]


def make_predictor(name: str, space: str, table: OpTable | None, random_state: int = 0):
    """A fresh predictor by CLI name (see ``MODEL_CHOICES``)."""
    if name not in MODEL_CHOICES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")
    if name == "flops-linear":
        return FlopsLinear(space)
    if name.startswith("table-sum"):
        return TableSum(space, table, calibrate=name.endswith("-cal"))
    if name.startswith("residual-"):
        return ResidualLatency(space, table, model=name.split("-", 1)[1], random_state=random_state)
    return LatencyModel(space, table, model=name, random_state=random_state)


#: folder of the shipped predictor for (profile, space) (the old name)
default_predictor_dir = shipped_predictor_dir


def shipped_predictors() -> list[tuple[str, str]]:
    """(profile, space) of every predictor shipped with the package."""
    return sorted((p.parent.parent.name, p.parent.name) for p in SHIPPED_PREDICTORS_DIR.glob("*/*/meta.json"))


def shipped_predictor(profile: str = DEFAULT_PROFILE, space: str = "mnasnet"):
    """The shipped, fitted predictor of (profile, space) in one call.

    An unknown pair is a one-line ``ValueError`` listing what ships.
    """
    from .persist import load_predictor

    ships = shipped_predictors()
    if (profile, space) not in ships:
        listed = ", ".join(f"{p}/{s}" for p, s in ships) or "none"
        hint = (f"; fit one with: mnas fit --profile {profile} --space {space} -o DIR"
                if profile in {p for p, _ in ships} else "")
        raise ValueError(f"no shipped predictor for profile {profile!r} and space {space!r}; "
                         f"shipped (profile/space): {listed}{hint}")
    return load_predictor(shipped_predictor_dir(profile, space), space=space, profile=profile)


def fit_on_tables(profile: str, space: str, model: str = "residual-xgb", *,
                  root: str | os.PathLike | None = None, include_test: bool = False,
                  exclude: Collection[str] = ()):
    """Fit ``model`` on the training split of the shipped tables; returns (predictor, info).

    ``exclude``: architecture strings kept out of the fit as well (say, networks re-timed
    elsewhere that the predictor is to be scored on).

    ``table-sum`` needs only the operator table: it is what (profile, space) pairs
    without end-to-end timings ship (the ProxylessNAS / FBNet lookup-table estimate).
    """
    if model == "table-sum":
        est = TableSum(space, OpTable.shipped(profile, space, root)).fit()
        try:
            n_test = len(split(*load_timings(profile, space, root))[2])
        except FileNotFoundError:
            n_test = 0
        return est, {"train_rows": 0, "test_rows": n_test, "model": model,
                     "selection": "operator table only (no end-to-end timings used)"}
    archs, y = load_timings(profile, space, root)
    tr_a, tr_y, te_a, te_y = split(archs, y)
    if include_test:
        tr_a, tr_y = archs, y
    if exclude:
        drop = set(exclude)
        keep = [i for i, a in enumerate(tr_a) if a not in drop]
        tr_a, tr_y = [tr_a[i] for i in keep], np.asarray(tr_y)[keep]
    if len(tr_a) < 2:
        raise ValueError(f"only {len(tr_a)} training timings for {profile}/{space}; measure more")
    try:
        table = OpTable.shipped(profile, space, root)
    except FileNotFoundError:
        if model not in ("flops-linear", "xgb", "mlp", "ridge"):
            raise
        table = None
    est = make_predictor(model, space, table).fit(tr_a, tr_y)
    return est, {"train_rows": len(tr_a), "test_rows": len(te_a), "model": model,
                 "excluded": len(set(exclude))}


def evaluate_on_tables(profile: str, space: str, predictor=None, *,
                       root: str | os.PathLike | None = None, plot: str | None = None) -> dict:
    """Metrics on the held-out rows for ``predictor`` (default: the shipped one) and the
    FlopsLinear and TableSum baselines fitted on the training rows."""
    from .persist import load_predictor

    archs, y = load_timings(profile, space, root)
    tr_a, tr_y, te_a, te_y = split(archs, y)
    if len(te_a) < 2:
        raise ValueError(f"only {len(te_a)} held-out timings for {profile}/{space}")
    if predictor is None:
        where = shipped_predictor_dir(profile, space)
        if not (where / "meta.json").is_file():
            raise FileNotFoundError(f"no shipped predictor for {profile}/{space} (at {where}); fit "
                                    f"one with: mnas fit --profile {profile} --space {space} -o DIR, "
                                    f"then evaluate it with --predictor DIR")
        predictor = load_predictor(where, space=space, profile=profile)
    preds = {"model": predictor.predict(te_a)}
    base = {"flops_linear": FlopsLinear(space).fit(tr_a, tr_y)}
    try:
        table = OpTable.shipped(profile, space, root)
        base["table_sum"] = TableSum(space, table).fit()
        base["table_sum_calibrated"] = TableSum(space, table, calibrate=True).fit(tr_a, tr_y)
    except FileNotFoundError:
        pass
    out = latency_metrics(te_y, preds["model"])
    out["predictor"] = type(predictor).__name__ + (f"({predictor.model})" if hasattr(predictor, "model") else "")
    out["baselines"] = {}
    for k, est in base.items():
        preds[k] = est.predict(te_a)
        out["baselines"][k] = latency_metrics(te_y, preds[k])
    out.update({"profile": profile, "space": space, "train_rows": len(tr_a)})
    if plot:
        from .metrics import plot_predicted_vs_measured

        out["plot"] = plot_predicted_vs_measured(te_y, preds, plot,
                                                 title=f"{profile} / {space}: held-out rows (n={len(te_y)})")
    return out
