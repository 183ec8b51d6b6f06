"""Save and load fitted predictors in stable formats (no pickle).

A saved predictor is a folder:

- ``meta.json``: class, constructor arguments, space, profile, the operator table's
  sha256 and source, library versions, training summary, fitted scalars;
- ``ops.json``: the operator-table entries the predictor was fitted with (so it is
  self-contained and does not change when a table grows);
- ``model.json`` (XGBoost's JSON format) or ``model.pt`` (a torch state dict) or
  nothing (linear models keep their coefficients in ``meta.json`` and load as the
  fitted scikit-learn pipeline, scaler and linear model, they were saved from).

Loading checks the space and profile a caller expects and refuses a mismatch.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .estimators import FlopsLinear, LatencyModel, ResidualLatency, TableSum, make_regressor
from .optable import OpTable

FORMAT = 1
_CLASSES = {c.__name__: c for c in (FlopsLinear, TableSum, LatencyModel, ResidualLatency)}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for d in ("mnas-surrogate", "numpy", "scikit-learn", "xgboost-cpu", "torch"):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = None
    return out


def _linear_state(pipe) -> dict:
    """StandardScaler + linear model (ridge or Huber) as JSON-ready numbers."""
    scaler, lin = pipe[0], pipe[-1]
    alpha = getattr(lin, "alpha_", getattr(lin, "alpha", None))
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": np.ravel(lin.coef_).tolist(), "intercept": float(lin.intercept_),
            "alpha": None if alpha is None else float(alpha)}


def _restore_linear(pipe, state: dict):
    """The unfitted StandardScaler + linear-model pipeline ``pipe`` with the fitted
    attributes of :func:`_linear_state`'s ``state``: a real scikit-learn pipeline whose
    ``predict`` equals the saved one's."""
    scaler, lin = pipe[0], pipe[-1]
    mean = np.asarray(state["mean"], dtype=np.float64)
    scale = np.asarray(state["scale"], dtype=np.float64)
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, scale ** 2
    scaler.n_features_in_ = lin.n_features_in_ = len(mean)
    lin.coef_ = np.asarray(state["coef"], dtype=np.float64)
    lin.intercept_ = float(state["intercept"])
    if state.get("alpha") is not None and hasattr(lin, "alphas"):  # RidgeCV: the chosen alpha
        lin.alpha_ = float(state["alpha"])
    return pipe


def _portable(source: str | None) -> str | None:
    """A table path as ``data/latency_tables/...`` when it is one of the project's tables
    (no machine-specific absolute path in shipped metadata)."""
    if not source:
        return source
    parts = Path(source).parts
    for i in range(len(parts) - 1):
        if parts[i] == "data" and parts[i + 1] == "latency_tables":
            return "/".join(parts[i:])
    return source


def save_predictor(est, path: str | os.PathLike, *, profile: str | None = None,
                   extra: dict | None = None) -> Path:
    """Write ``est`` (fitted) to folder ``path`` atomically; returns the path."""
    name = type(est).__name__
    if name not in _CLASSES:
        raise ValueError(f"cannot save a {name}; savable: {', '.join(_CLASSES)}")
    if not hasattr(est, "features_"):
        raise ValueError(f"the {name} is not fitted")
    path = Path(path)
    params = {k: v for k, v in est.get_params(deep=False).items() if k != "table"}
    table = est.features_.table_
    meta = {"format": FORMAT, "class": name, "params": params, "space": est.space,
            "profile": profile or (table.profile if table is not None else None),
            "table": None if table is None else {"sha256": table.sha256,
                                                 "source": _portable(table.source),
                                                 "entries": len(table)},
            "versions": _versions(),
            "saved": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            **(extra or {})}
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent if path.parent.exists() else None))
    try:
        if table is not None:
            (tmp / "ops.json").write_text(json.dumps(table.entries, sort_keys=True))
        fitted: dict = {}
        if isinstance(est, (FlopsLinear, TableSum)):
            fitted = {"coef": float(est.coef_), "intercept": float(est.intercept_),
                      "floor_ratio": float(est.floor_ratio_)}
        else:
            reg = est.regressor_
            if est.model in ("xgb", "xgb-l1"):
                reg.get_booster().save_model(str(tmp / "model.json"))
                fitted = {"file": "model.json"}
            elif est.model == "mlp":
                import torch

                m, sd = reg.state()
                torch.save(sd, tmp / "model.pt")
                fitted = {"file": "model.pt", "mlp": m}
            elif est.model in ("ridge", "huber"):
                fitted = {"linear": _linear_state(reg)}
            else:
                raise ValueError(f"model {est.model!r} has no stable file format; save xgb, xgb-l1, "
                                 f"mlp, ridge or huber models")
        meta["fitted"] = fitted
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_predictor(path: str | os.PathLike, *, space: str | None = None,
                   profile: str | None = None):
    """Load a saved predictor; refuses one fitted for another space or profile."""
    path = Path(path)
    mp = path / "meta.json"
    if not mp.is_file():
        raise FileNotFoundError(f"no saved predictor at {path} (missing meta.json)")
    try:
        meta = json.loads(mp.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{mp}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if meta.get("format") != FORMAT or meta.get("class") not in _CLASSES:
        raise ValueError(f"{mp}: not a predictor saved by this library (format/class)")
    if space is not None and meta["space"] != space:
        raise ValueError(f"predictor at {path} was fitted for space {meta['space']!r}, not {space!r}")
    if profile is not None and meta.get("profile") != profile:
        raise ValueError(f"predictor at {path} was fitted for profile {meta.get('profile')!r}, "
                         f"not {profile!r}")
    table = None
    if meta.get("table"):
        entries = json.loads((path / "ops.json").read_text())
        table = OpTable(entries, profile=meta.get("profile"), space=meta["space"],
                        sha256=meta["table"]["sha256"], source=meta["table"]["source"])
    cls = _CLASSES[meta["class"]]
    params = dict(meta["params"])
    if "table" in cls().get_params():
        params["table"] = table
    est = cls(**params)
    fitted = meta["fitted"]
    if isinstance(est, (FlopsLinear, TableSum)):
        est.features_ = est._featuriser(("counts",) if isinstance(est, FlopsLinear) else ("table",))
        est.coef_, est.intercept_ = fitted["coef"], fitted["intercept"]
        est.floor_ratio_ = float(fitted.get("floor_ratio", 0.0))  # files before the floor: none
    else:
        est.features_ = est._featuriser(est._parts())
        reg = make_regressor(est.model, est.random_state, **(est.model_params or {}))
        if est.model in ("xgb", "xgb-l1"):
            reg.load_model(str(path / fitted["file"]))
        elif est.model == "mlp":
            import torch

            reg.load_state(fitted["mlp"], torch.load(path / fitted["file"], weights_only=True))
        else:  # "linear" (older files: "ridge")
            _restore_linear(reg, fitted.get("linear") or fitted["ridge"])
        est.regressor_ = reg
    est.n_features_in_ = est.features_.space_.n_decisions
    est.meta_ = meta
    return est
