"""Latency predictors: table sums, learned models, pricing of any network, persistence.

The public names are loaded on first use (``surrogate.predict.OpTable``), so
``import surrogate.predict`` stays light: scikit-learn loads with the estimators,
xgboost and torch only with a model that needs them.

>>> from surrogate.predict import shipped_predictor
>>> est = shipped_predictor("cpu-litert", "mnasnet")
>>> est.price("mnasnet-a1@w0.75,r192")            # doctest: +SKIP
"""
from __future__ import annotations

from space.lazy import lazy_exports

_EXPORTS = {
    "estimators": ("FlopsLinear", "LatencyModel", "ResidualLatency", "TableSum"),
    "regressors": ("MODELS", "make_regressor"),
    "features": ("ArchFeatures",),
    "optable": ("OpCost", "OpSum", "OpTable"),
    "oplevel": ("OpLevelModel", "config_from_key", "row_to_config"),
    "pricing": ("Pricing", "oplevel_fallback", "price_many"),
    "persist": ("load_predictor", "save_predictor"),
    "metrics": ("latency_metrics",),
    "transfer": ("FewShotTransfer",),
    "baselines": ("Additive",),
    "selection": ("Selection", "ValidationSelector", "candidates", "cv_mape", "select_and_fit",
                  "validation_split"),
    "fewshot": ("Precomputed", "curve_summary", "kshot_curve"),
    "workflow": ("MODEL_CHOICES", "default_predictor_dir", "evaluate_on_tables", "fit_on_tables",
                 "evaluation_frame", "load_timings", "make_predictor", "shipped_predictor",
                 "shipped_predictors", "split", "timings_frame"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
