"""The Accel-NASBench accuracy surrogate: benchmark paths, its training pipeline, the objective.

:class:`AnbAccuracy` is an XGBoost surrogate fitted by this project on
Accel-NASBench ``val_top1`` (ImageNet top-1 after the benchmark's 16-epoch proxy
training), shipped in ``search/data/anb_accuracy.json`` with provenance in
``anb_accuracy.meta.json``; it works offline. :func:`fit_anb_accuracy` re-creates
it from the benchmark CSV (``accel_nasbench/anb_results.csv``, never copied).
"""
from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from space import get_space
from surrogate.datasets.anb import anb_rows
from surrogate.tables import file_sha256

from .base import AccuracyObjective, resolve_benchmark_file

ANB_SUBDIR, ANB_FILE = "accel_nasbench", "anb_results.csv"

#: the benchmark's own surrogate (Accel-NASBench paper, random 80/10/10 split)
ANB_ANCHOR = {"kendall_tau": 0.917, "r2": 0.984}
#: XGBoost settings picked by bench/anb_accuracy_surrogate.py on validation splits with
#: the one-standard-error rule (the smallest model within one SE of the best mean tau).
ANB_XGB_PARAMS: dict[str, Any] = {
    "n_estimators": 2000, "learning_rate": 0.02, "max_depth": 4, "subsample": 0.8,
    "colsample_bytree": 0.5, "min_child_weight": 2.0, "reg_lambda": 1.0,
    "objective": "reg:squarederror", "tree_method": "hist",
}
ANB_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
ANB_DEFAULT_SEED = 0
ANB_MODEL_NAME = "anb_accuracy.json"
ANB_META_NAME = "anb_accuracy.meta.json"
META_FORMAT = 1


def package_data_dir() -> Path:
    """Folder of the data shipped with the package (``search/data``, beside this package)."""
    here = Path(__file__).resolve().parents[1] / "data"
    if here.is_dir():
        return here
    try:  # pragma: no cover - zipped or unusual installs
        from importlib.resources import files

        return Path(str(files("search.data")))
    except Exception:  # noqa: BLE001 - fall back to the module-relative path for the message
        return here


def anb_feature_spec() -> dict:
    """The feature definition of the anb surrogate (checked against the shipped meta)."""
    sp = get_space("anb")
    cols = [f"{d.name}={c}" for d in sp.decisions for c in d.choices]
    return {"name": "anb-onehot-v1", "space": "anb", "encoding": "SearchSpace.onehot",
            "width": len(cols), "columns": cols}


def anb_features(idx: np.ndarray) -> np.ndarray:
    """Features of an ``(n, 28)`` array of anb index vectors (the one-hot encoding)."""
    return get_space("anb").onehot(idx)


def load_anb_csv(csv_path: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray, Path]:
    """Index vectors ``(n, 28)``, ``val_top1`` as fractions ``(n,)`` and the resolved path.

    Every row is kept (``anb_rows(unique=False)``); :func:`anb_split` keeps repeats together.
    """
    path = resolve_benchmark_file(csv_path, ANB_SUBDIR, ANB_FILE, "Accel-NASBench CSV")
    data = anb_rows(path, need=("val_top1",), unique=False)
    if not data.rows:
        raise ValueError(f"{path}: no rows")
    acc = []
    for line_no, row in enumerate(data.rows, start=2):
        try:
            acc.append(float(row["val_top1"]) / 100.0)
        except ValueError as exc:
            raise ValueError(f"{path} line {line_no}: {exc}") from None
    y = np.array(acc, dtype=np.float64)
    if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
        raise ValueError(f"{path}: val_top1 must be percentages in [0, 100]")
    return data.indices, y, path


def anb_split(idx: np.ndarray, seed: int,
              fractions: Sequence[float] = ANB_SPLIT_FRACTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/val/test row indices (80/10/10 by default) from an explicit seed.

    The split is over unique architectures, so the benchmark's few duplicate rows
    (13 of 5,138) never straddle two parts.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    _, group = np.unique(np.asarray(idx), axis=0, return_inverse=True)
    group = group.ravel()
    n_groups = int(group.max()) + 1
    perm = np.random.default_rng(seed).permutation(n_groups)
    c1 = int(round(fractions[0] * n_groups))
    c2 = int(round((fractions[0] + fractions[1]) * n_groups))
    part = np.empty(n_groups, dtype=np.int64)
    part[perm[:c1]], part[perm[c1:c2]], part[perm[c2:]] = 0, 1, 2
    rows = part[group]
    return tuple(np.flatnonzero(rows == k) for k in range(3))  # type: ignore[return-value]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Kendall tau, Spearman rho, R^2 and mean absolute error (accuracy points)."""
    from scipy.stats import kendalltau, spearmanr

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {"kendall_tau": float(kendalltau(y_true, y_pred)[0]),
            "spearman": float(spearmanr(y_true, y_pred)[0]),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "mae_points": float(np.mean(np.abs(y_true - y_pred)) * 100), "n": int(y_true.size)}


def _library_versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("xgboost", "scipy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:  # pragma: no cover
            out[mod] = None
    return out


def train_anb_xgb(x: np.ndarray, y: np.ndarray, params: dict | None = None, seed: int = 0,
                  n_jobs: int = 1):
    """Fit an XGBoost regressor (``ANB_XGB_PARAMS`` unless ``params``); returns the model."""
    import xgboost as xgb

    p = dict(ANB_XGB_PARAMS if params is None else params)
    model = xgb.XGBRegressor(random_state=seed, n_jobs=n_jobs, **p)
    model.fit(x, y)
    return model


def fit_anb_accuracy(csv_path: str | os.PathLike | None, out_dir: str | os.PathLike,
                     seed: int = ANB_DEFAULT_SEED, params: dict | None = None,
                     n_jobs: int = 1) -> dict:
    """Fit the anb surrogate on the train part of the seed's 80/10/10 split and write
    ``anb_accuracy.json`` (XGBoost JSON) and ``anb_accuracy.meta.json`` into ``out_dir``.

    Returns the metadata (metrics on the validation and test parts included).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    idx, y, path = load_anb_csv(csv_path)
    tr, va, te = anb_split(idx, int(seed))
    x = anb_features(idx)
    p = dict(ANB_XGB_PARAMS if params is None else params)
    t0 = time.perf_counter()
    model = train_anb_xgb(x[tr], y[tr], p, seed=int(seed), n_jobs=n_jobs)
    fit_s = time.perf_counter() - t0
    booster = model.get_booster()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / ANB_MODEL_NAME
    booster.save_model(str(model_path))
    pred = np.clip(model.predict(x), 0.0, 1.0)
    meta = {
        "format": META_FORMAT,
        "objective": "anb",
        "description": "Accuracy surrogate for the Accel-NASBench space, fitted by mnas-surrogate",
        "target": "val_top1 / 100: ImageNet top-1 (fraction) after Accel-NASBench's 16-epoch "
                  "proxy training at 160-192 px",
        "data": {"file": path.name, "sha256": file_sha256(path), "rows": int(len(y)),
                 "unique_architectures": int(len(np.unique(idx, axis=0))),
                 "source": "Accel-NASBench (Ahmad et al., 2024)", "license": "Apache-2.0"},
        "split": {"seed": int(seed), "fractions": list(ANB_SPLIT_FRACTIONS),
                  "method": "random over unique architectures (duplicate rows kept together); "
                            "search.accuracy.anb_split",
                  "n_train": int(tr.size), "n_val": int(va.size), "n_test": int(te.size),
                  "fitted_on": "train"},
        "features": anb_feature_spec(),
        "model": {"library": "xgboost", "class": "XGBRegressor", "params": p,
                  "random_state": int(seed), "file": ANB_MODEL_NAME,
                  "sha256": file_sha256(model_path), "output": "clipped to [0, 1]"},
        "metrics": {"train": regression_metrics(y[tr], pred[tr]),
                    "val": regression_metrics(y[va], pred[va]),
                    "test": regression_metrics(y[te], pred[te])},
        "anchor": {**ANB_ANCHOR, "source": "Accel-NASBench's XGBoost surrogate, random 80/10/10"},
        "fit_seconds": round(fit_s, 3),
        "versions": _library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    (out / ANB_META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def load_anb_meta(model_path: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """The model path and its metadata (the shipped artifact unless ``model_path``)."""
    mp = Path(model_path).expanduser() if model_path else package_data_dir() / ANB_MODEL_NAME
    if not mp.is_file():
        raise FileNotFoundError(f"anb surrogate model {mp} does not exist (re-create it with "
                                f"bench/anb_accuracy_surrogate.py --write-artifact)")
    meta_path = mp.with_name(mp.name[:-len(".json")] + ".meta.json") if mp.name.endswith(".json") \
        else mp.with_name(mp.name + ".meta.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"anb surrogate metadata {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"anb surrogate metadata {meta_path} is not valid JSON: {exc}") from None
    return mp, meta


class AnbAccuracy(AccuracyObjective):
    """Accel-NASBench ImageNet top-1 (16-epoch proxy) predicted by the shipped surrogate."""

    name = "anb"
    space_name = "anb"

    def __init__(self, model_path: str | os.PathLike | None = None,
                 cache_path: str | os.PathLike | None = None, *, verify: bool = True) -> None:
        mp, meta = load_anb_meta(model_path)
        spec = anb_feature_spec()
        if meta.get("features") != spec:
            got = (meta.get("features") or {}).get("name")
            raise ValueError(f"anb surrogate {mp}: its feature definition ({got!r}) does not match "
                             f"this code's ({spec['name']!r}, width {spec['width']}); refit it with "
                             f"bench/anb_accuracy_surrogate.py --write-artifact")
        digest = file_sha256(mp)
        if verify and meta.get("model", {}).get("sha256") not in (None, digest):
            raise ValueError(f"anb surrogate {mp}: sha256 differs from its metadata; the model "
                             f"and {ANB_META_NAME} do not belong together")
        self.model_path = mp
        self.meta = meta
        self._digest = digest
        import xgboost as xgb

        self._booster = xgb.Booster(model_file=str(mp))
        self._booster.set_param({"nthread": 1})
        n_feat = self._booster.num_features()
        if n_feat != spec["width"]:
            raise ValueError(f"anb surrogate {mp}: the model takes {n_feat} features, the code "
                             f"makes {spec['width']}")
        super().__init__(cache_path)

    @property
    def fingerprint(self) -> str:
        """Identity of the surrogate file (part of the cache key)."""
        return "xgb-" + self._digest[:16]

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        pred = self._booster.inplace_predict(anb_features(idx))
        return np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)


__all__ = [
    "ANB_ANCHOR", "ANB_DEFAULT_SEED", "ANB_FILE", "ANB_META_NAME", "ANB_MODEL_NAME",
    "ANB_SPLIT_FRACTIONS", "ANB_SUBDIR", "ANB_XGB_PARAMS", "META_FORMAT", "AnbAccuracy",
    "anb_feature_spec", "anb_features", "anb_split", "fit_anb_accuracy", "load_anb_csv",
    "load_anb_meta", "package_data_dir", "regression_metrics", "train_anb_xgb",
]
