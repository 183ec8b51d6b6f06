"""Save and load fitted predictors in stable formats (no pickle).

A saved predictor is a folder:

- ``meta.json``: class, constructor arguments, space, profile, the operator table's
  sha256 and source, library versions, training summary, fitted scalars;
- ``ops.json``: the operator-table entries the predictor was fitted with (so it is
  self-contained and does not change when a table grows);
- ``model.json`` (XGBoost's JSON format) or ``model.pt`` (a torch state dict) or
  nothing (linear models keep their coefficients in ``meta.json`` and load as the
  fitted scikit-learn pipeline, scaler and linear model, they were saved from).

:class:`~surrogate.predict.baselines.Additive` keeps its per-(position, choice) costs
in ``meta.json``. A :class:`~surrogate.predict.multisource.MultiSourceTransfer` keeps
its weights, residual and feature scaling there, and names its sources (``sources``:
``{name: {"profile", "space"}}`` for a shipped predictor, or ``{"path"}`` for a saved
folder). They are loaded again with it.

Loading checks the space and profile a caller expects and refuses a mismatch.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..atomic import write_folder_atomic
from ..tables import write_atomic, write_json_atomic
from .baselines import Additive
from .estimators import FlopsLinear, LatencyModel, ResidualLatency, TableSum, make_regressor
from .multisource import MultiSourceTransfer
from .optable import OpTable

FORMAT = 1
#: the shipped predictors (``workflow.PREDICTORS_DIR``), sources saved by name
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "predictors"
_CLASSES = {c.__name__: c for c in (FlopsLinear, TableSum, LatencyModel, ResidualLatency,
                                    Additive, MultiSourceTransfer)}
_MULTI_ARRAYS = ("weights_", "residual_coef_", "feature_mean_", "feature_scale_")
_MULTI_SCALARS = ("mode_", "choice_", "beta_", "alpha_", "loo_error_", "intercept_", "y_min_", "k_")


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


def source_ref(name: str, src) -> dict:
    """How a saved MultiSourceTransfer finds source ``name`` again: the ``profile`` and
    ``space`` of a shipped predictor, else the folder it was loaded from (``path_``)."""
    meta, where = getattr(src, "meta_", None), getattr(src, "path_", None)
    if not meta or not where:
        raise ValueError(f"source {name!r} is not a loaded predictor; give its reference "
                         f"(sources={{name: {{'profile': ..., 'space': ...}} or {{'path': ...}}}})")
    if Path(where).resolve().is_relative_to(SHIPPED_DIR):
        return {"profile": meta.get("profile"), "space": meta.get("space")}
    return {"path": str(Path(where).resolve()), "space": meta.get("space")}


def _multi_state(est, sources: Mapping[str, dict] | None) -> dict:
    refs = {n: (dict(sources[n]) if sources and n in sources else source_ref(n, s))
            for n, s in (est.sources or {}).items()}
    out: dict[str, Any] = {"sources": refs, "source_names": list(est.source_names_)}
    out.update({k: np.asarray(getattr(est, k), dtype=np.float64).tolist() for k in _MULTI_ARRAYS})
    for k in _MULTI_SCALARS:
        v = getattr(est, k)
        out[k] = v if isinstance(v, str) else (None if not np.isfinite(v) else float(v))
    return out


def save_predictor(est, path: str | os.PathLike, *, profile: str | None = None,
                   extra: dict | None = None, sources: Mapping[str, dict] | None = None) -> Path:
    """Write ``est`` (fitted) to folder ``path`` atomically; returns the path.

    ``sources``: for a :class:`MultiSourceTransfer`, name -> reference of each source
    (see the module docstring); default: read from the loaded sources' ``meta_``.
    """
    name = type(est).__name__
    if name not in _CLASSES:
        raise ValueError(f"cannot save a {name}; savable: {', '.join(_CLASSES)}")
    fitted_attr = {"Additive": "coef_", "MultiSourceTransfer": "weights_"}.get(name, "features_")
    if not hasattr(est, fitted_attr):
        raise ValueError(f"the {name} is not fitted")
    path = Path(path)
    params = {k: v for k, v in est.get_params(deep=False).items() if k not in ("table", "sources")}
    table = est.features_.table_ if hasattr(est, "features_") else None
    meta = {"format": FORMAT, "class": name, "params": params, "space": est.space,
            "profile": profile or (table.profile if table is not None else None),
            "table": None if table is None else {"sha256": table.sha256,
                                                 "source": _portable(table.source),
                                                 "entries": len(table)},
            "versions": _versions(),
            "saved": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            **(extra or {})}

    def fill(tmp: Path) -> None:
        if table is not None:
            write_atomic(tmp / "ops.json", json.dumps(table.entries, sort_keys=True))
        fitted: dict = {}
        if isinstance(est, Additive):
            fitted = {"coef": est.coef_.tolist(), "intercept": float(est.intercept_)}
        elif isinstance(est, MultiSourceTransfer):
            fitted = _multi_state(est, sources)
        elif isinstance(est, (FlopsLinear, TableSum)):
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
        write_json_atomic(tmp / "meta.json", meta)

    return write_folder_atomic(path, fill=fill)


def load_predictor(path: str | os.PathLike, *, space: str | None = None,
                   profile: str | None = None):
    """Load a saved predictor; refuses one fitted for another space or profile."""
    path = Path(path)
    mp = path / "meta.json"
    if not mp.is_file():
        raise FileNotFoundError(f"no saved predictor at {path} (missing meta.json)")
    meta = _read_json(mp)
    if not isinstance(meta, dict):
        raise ValueError(f"{mp}: not a predictor saved by this library (not a JSON object)")
    if meta.get("class") == "CrossDeviceLatency":  # a phone predictor owns its folder format
        from .crossdevice import CrossDeviceLatency

        return CrossDeviceLatency.load(path)
    try:
        return _load(path, mp, meta, space, profile)
    except KeyError as exc:
        raise ValueError(f"{mp}: lacks the field {exc} (a damaged or foreign predictor)") from None


def _read_json(p: Path):
    """JSON of a predictor file; errors name the file (and line)."""
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: missing (the predictor folder is incomplete)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file") from None


def _load(path: Path, mp: Path, meta: dict, space: str | None, profile: str | None):
    if meta.get("format") != FORMAT or meta.get("class") not in _CLASSES:
        raise ValueError(f"{mp}: not a predictor saved by this library (format/class)")
    if space is not None and meta["space"] != space:
        raise ValueError(f"predictor at {path} was fitted for space {meta['space']!r}, not {space!r}")
    if profile is not None and meta.get("profile") != profile:
        raise ValueError(f"predictor at {path} was fitted for profile {meta.get('profile')!r}, "
                         f"not {profile!r}")
    table = None
    if meta.get("table"):
        entries = _read_json(path / "ops.json")
        if not isinstance(entries, dict) or not all(isinstance(v, (int, float)) for v in entries.values()):
            raise ValueError(f"{path / 'ops.json'}: expected an object of operator key -> ms")
        table = OpTable(entries, profile=meta.get("profile"), space=meta["space"],
                        sha256=meta["table"]["sha256"], source=meta["table"]["source"])
    cls = _CLASSES[meta["class"]]
    params = dict(meta["params"])
    if "table" in cls().get_params():
        params["table"] = table
    fitted = meta["fitted"]
    if cls is Additive:
        est = cls(**params)
        from space.spaces import get_space

        est.space_ = get_space(est.space)
        est.coef_ = np.asarray(fitted["coef"], dtype=np.float64)
        est.intercept_ = float(fitted["intercept"])
        est.meta_, est.path_ = meta, str(path)
        return est
    if cls is MultiSourceTransfer:
        est = _load_multi(cls, params, fitted, meta)
        est.path_ = str(path)
        return est
    est = cls(**params)
    if isinstance(est, (FlopsLinear, TableSum)):
        est.features_ = est._featuriser(("counts",) if isinstance(est, FlopsLinear) else ("table",))
        est.coef_, est.intercept_ = fitted["coef"], fitted["intercept"]
        est.floor_ratio_ = float(fitted.get("floor_ratio", 0.0))  # files before the floor: none
    else:
        est.features_ = est._featuriser(est._parts())
        reg = make_regressor(est.model, est.random_state, **(est.model_params or {}))
        if est.model in ("xgb", "xgb-l1"):
            model_file = path / fitted["file"]
            if not model_file.is_file():
                raise FileNotFoundError(f"{model_file}: missing (the predictor folder is incomplete)")
            try:
                reg.load_model(str(model_file))
            except Exception as exc:  # xgboost raises its own XGBoostError, with a long trace
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"{model_file}: not a readable XGBoost model ({first[:160]})") from None
        elif est.model == "mlp":
            from ..tensorfile import load_tensors

            mlp, model_file = fitted["mlp"], path / fitted["file"]
            state = load_tensors(model_file)  # tensors and plain values only: never unpickles
            if not isinstance(state, dict):
                raise ValueError(f"{model_file}: not a saved MLP (expected a state dict of tensors)")
            try:
                reg.load_state(mlp, state)
            except (RuntimeError, TypeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"{model_file}: does not fit the MLP described in {mp} "
                                 f"({first[:160]})") from None
        else:  # "linear" (older files: "ridge")
            _restore_linear(reg, fitted.get("linear") or fitted["ridge"])
        est.regressor_ = reg
    est.n_features_in_ = est.features_.space_.n_decisions
    est.meta_, est.path_ = meta, str(path)
    return est


def load_source(ref: Mapping[str, Any]):
    """A source predictor from its reference: ``{"path"}`` or ``{"profile", "space"}``."""
    if ref.get("path"):
        return load_predictor(ref["path"], space=ref.get("space"))
    where = SHIPPED_DIR / str(ref["profile"]) / str(ref["space"])
    if not (where / "meta.json").is_file():
        raise ValueError(f"source {ref['profile']}/{ref['space']}: no shipped predictor at {where}")
    return load_predictor(where, space=ref["space"], profile=ref["profile"])


def _load_multi(cls, params: dict, fitted: dict, meta: dict):
    from .multisource import space_features

    srcs = {n: load_source(r) for n, r in fitted["sources"].items()}
    est = cls(**params, sources={n: srcs[n] for n in fitted["source_names"]})
    est.features_ = space_features(est.space, tuple(est.parts))[0]
    est.source_names_ = list(fitted["source_names"])
    for k in _MULTI_ARRAYS:
        setattr(est, k, np.asarray(fitted[k], dtype=np.float64))
    for k in _MULTI_SCALARS:
        v = fitted[k]
        setattr(est, k, v if isinstance(v, str) else (float("inf") if v is None else v))
    est.k_ = int(est.k_)
    est.n_features_in_ = est.features_.space_.n_decisions
    est.meta_ = meta
    return est
