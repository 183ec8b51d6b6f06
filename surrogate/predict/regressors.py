"""Regressors by short name, and the check of latency targets (ms) that every estimator shares."""
from __future__ import annotations

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
