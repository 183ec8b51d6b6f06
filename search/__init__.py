"""mnas-surrogate search: objectives, reward, sweeps and controllers, the ``mnas`` CLI.

The public names are loaded on first use (``search.run_sweep``), so ``import search``
does not load optuna, xgboost or torch.
"""
from __future__ import annotations

from space.lazy import lazy_exports

_EXPORTS = {
    "reward": ("MnasReward",),
    "pareto": ("compare_fronts", "hypervolume_2d", "pareto_front", "pareto_mask"),
    "latency": ("MeasuredLatency", "PredictedLatency", "host_latency"),
    "accuracy": ("accuracy_names", "get_accuracy", "register_accuracy"),
    "controllers": ("controller_names", "make_controller"),
    "sweep": ("SAMPLERS", "SweepConfig", "SweepResult", "remeasure_finalists", "run_sweep",
              "write_summary"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
