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

Each savable class owns its state: ``est._saved_state(folder, sources=...)`` returns the
``fitted`` record of ``meta.json`` (writing any side file into ``folder``) and
``cls._from_saved(params, fitted, folder, table, meta, load_source=...)`` rebuilds the
fitted estimator from it; ``cls._FITTED_ATTR`` names an attribute present once fitted.
This module only writes and reads the folder and dispatches by class name
(:data:`_CLASSES`). Loading checks the space and profile a caller expects and refuses a
mismatch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_folder_atomic
from ..paths import portable_source, shipped_predictor_dir
from ..tables import now_iso, write_atomic, write_json_atomic
from .baselines import Additive
from .estimators import FlopsLinear, LatencyModel, ResidualLatency, TableSum
from .multisource import MultiSourceTransfer
from .optable import OpTable

FORMAT = 1
_CLASSES = {c.__name__: c for c in (FlopsLinear, TableSum, LatencyModel, ResidualLatency,
                                    Additive, MultiSourceTransfer)}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for d in ("mnas-surrogate", "numpy", "scikit-learn", "xgboost-cpu", "torch"):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = None
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
    if not hasattr(est, _CLASSES[name]._FITTED_ATTR):
        raise ValueError(f"the {name} is not fitted")
    path = Path(path)
    params = {k: v for k, v in est.get_params(deep=False).items() if k not in ("table", "sources")}
    table = getattr(getattr(est, "features_", None), "table_", None)
    meta = {"format": FORMAT, "class": name, "params": params, "space": est.space,
            "profile": profile or (table.profile if table is not None else None),
            "table": None if table is None else {"sha256": table.sha256,
                                                 "source": portable_source(table.source),
                                                 "entries": len(table)},
            "versions": _versions(),
            "saved": now_iso(),
            **(extra or {})}

    def fill(tmp: Path) -> None:
        if table is not None:
            write_atomic(tmp / "ops.json", json.dumps(table.entries, sort_keys=True))
        meta["fitted"] = est._saved_state(tmp, sources=sources)
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
    est = cls._from_saved(params, meta["fitted"], path, table, meta, load_source=load_source)
    est.meta_, est.path_ = meta, str(path)
    return est


def load_source(ref: Mapping[str, Any]):
    """A source predictor from its reference: ``{"path"}`` or ``{"profile", "space"}``."""
    if ref.get("path"):
        return load_predictor(ref["path"], space=ref.get("space"))
    where = shipped_predictor_dir(str(ref["profile"]), str(ref["space"]))
    if not (where / "meta.json").is_file():
        raise ValueError(f"source {ref['profile']}/{ref['space']}: no shipped predictor at {where}")
    return load_predictor(where, space=ref["space"], profile=ref["profile"])
