"""Regressors by short name, their stable file formats, and the check of latency targets (ms)
that every estimator shares."""
from __future__ import annotations

from pathlib import Path

import numpy as np

MODELS = ("xgb", "xgb-l1", "rf", "extratrees", "hgb", "ridge", "huber", "mlp")


def make_regressor(name: str, random_state: int | None = 0, **params):
    """A fresh regressor by short name (see ``MODELS``).

    ``xgb-l1`` is XGBoost with an absolute-error objective and shallow trees and
    ``huber`` a Huber-loss linear model: both robust to the outlying timings that a
    shared machine or a phone's governor produce (best on the HELP phones,
    ``bench/help_phones.py``).
    """
    if name in ("xgb", "xgb-l1"):
        from xgboost import XGBRegressor

        defaults = dict(n_estimators=600, learning_rate=0.05, max_depth=6, subsample=0.8,
                        colsample_bytree=0.8, min_child_weight=1.0, reg_lambda=1.0, n_jobs=1,
                        random_state=0 if random_state is None else random_state,
                        tree_method="hist")
        if name == "xgb-l1":
            defaults.update(objective="reg:absoluteerror", max_depth=2, n_estimators=1500,
                            learning_rate=0.03)
        return XGBRegressor(**{**defaults, **params})
    if name == "huber":
        from sklearn.linear_model import HuberRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), HuberRegressor(**{"epsilon": 1.1, "alpha": 1e-3,
                                                                   "max_iter": 3000, **params}))
    if name == "rf":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**{"n_estimators": 300, "min_samples_leaf": 1, "n_jobs": 1,
                                        "random_state": random_state, **params})
    if name == "extratrees":
        from sklearn.ensemble import ExtraTreesRegressor

        return ExtraTreesRegressor(**{"n_estimators": 300, "n_jobs": 1,
                                      "random_state": random_state, **params})
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(**{"max_iter": 500, "learning_rate": 0.05,
                                                "random_state": random_state, **params})
    if name == "ridge":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15), **params))
    if name == "mlp":
        from .mlp import TorchMLPRegressor

        return TorchMLPRegressor(random_state=random_state, **params)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


def _check_y(y, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.shape[0] != n:
        raise ValueError(f"got {n} architectures but {y.shape[0]} latencies")
    if not np.all(np.isfinite(y)) or (y <= 0).any():
        raise ValueError("latencies must be positive finite numbers (ms)")
    return y


# -- stable file formats of fitted regressors (no pickle) ------------------------------
def save_regressor(name: str, reg, folder: Path) -> dict:
    """Write fitted regressor ``reg`` (short name ``name``) into ``folder``; returns the JSON-ready
    record :func:`load_regressor` reads (XGBoost ``model.json``, torch ``model.pt``, or linear
    coefficients inline)."""
    if name in ("xgb", "xgb-l1"):
        reg.get_booster().save_model(str(folder / "model.json"))
        return {"file": "model.json"}
    if name == "mlp":
        import torch

        m, sd = reg.state()
        torch.save(sd, folder / "model.pt")
        return {"file": "model.pt", "mlp": m}
    if name in ("ridge", "huber"):
        return {"linear": _linear_state(reg)}
    raise ValueError(f"model {name!r} has no stable file format; save xgb, xgb-l1, "
                     f"mlp, ridge or huber models")


def load_regressor(name: str, random_state: int | None, params: dict | None, fitted: dict,
                   folder: Path):
    """The regressor :func:`save_regressor` wrote into ``folder`` (``ValueError`` /
    ``FileNotFoundError`` name the file)."""
    reg = make_regressor(name, random_state, **(params or {}))
    if name in ("xgb", "xgb-l1"):
        model_file = folder / fitted["file"]
        if not model_file.is_file():
            raise FileNotFoundError(f"{model_file}: missing (the predictor folder is incomplete)")
        try:
            reg.load_model(str(model_file))
        except Exception as exc:  # xgboost raises its own XGBoostError, with a long trace
            raise ValueError(f"{model_file}: not a readable XGBoost model ({_first_line(exc)})") from None
    elif name == "mlp":
        from ..tensorfile import load_tensors

        mlp, model_file = fitted["mlp"], folder / fitted["file"]
        state = load_tensors(model_file)  # tensors and plain values only: never unpickles
        if not isinstance(state, dict):
            raise ValueError(f"{model_file}: not a saved MLP (expected a state dict of tensors)")
        try:
            reg.load_state(mlp, state)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"{model_file}: does not fit the MLP described in {folder / 'meta.json'} "
                             f"({_first_line(exc)})") from None
    else:  # "linear" (older files: "ridge")
        _restore_linear(reg, fitted.get("linear") or fitted["ridge"])
    return reg


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


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
