"""Differentiable forms of whole latency predictors: :func:`relaxed_latency`.

A relaxed architecture is a ``(n, space.onehot_width)`` tensor of per-decision
probability vectors (:mod:`surrogate.predict.differentiable`). For each fitted
predictor, :func:`relaxed_latency` gives a torch module ``probs -> ms`` that equals
``predictor.predict`` on one-hots: the expected operator-table sum for a TableSum,
expected MAdds for FlopsLinear (both under the predictor's floored affine map),
:class:`~surrogate.predict.differentiable.RelaxedMLP` for an encoding-only MLP, and
:class:`RelaxedLearnedLatency` (a ridge / Huber / MLP head on the expected features)
for learned and residual models. Other models (XGBoost) are distilled into an MLP on
log latency (:mod:`surrogate.predict.distill`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .differentiable import ExpectedTableLatency, RelaxedFeatures, RelaxedMLP
from .estimators import FlopsLinear, LatencyModel, TableSum


def _linear_head(reg) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(mean, scale, coef, intercept) of a fitted StandardScaler + linear-model pipeline,
    else None."""
    steps = getattr(reg, "steps", None)
    if not steps or len(steps) != 2:
        return None
    sc, lin = steps[0][1], steps[1][1]
    if not (hasattr(sc, "mean_") and hasattr(lin, "coef_")):
        return None
    return sc.mean_, sc.scale_, np.ravel(lin.coef_), float(np.ravel(lin.intercept_)[0])


class RelaxedLearnedLatency(nn.Module):
    """A ``LatencyModel`` / ``ResidualLatency`` with a linear (ridge, Huber) or torch-MLP
    regressor on :class:`RelaxedFeatures`: ``exp(f(features)) [* table sum]`` (ms)."""

    def __init__(self, predictor):
        super().__init__()
        self.features = RelaxedFeatures(predictor.features_)
        self.residual = bool(predictor.residual)
        self.table = None
        if self.residual and self.features.sum_w is None:  # residual on features without table
            self.table = ExpectedTableLatency(predictor.features_.compiled_, torch.float64)
        reg = predictor.regressor_
        lin = _linear_head(reg)
        self.mlp = None
        if lin is not None:
            mean, scale, coef, intercept = lin
            self.register_buffer("w", torch.as_tensor(coef / scale, dtype=torch.float64))
            self.b = float(intercept - np.dot(mean / scale, coef))
        elif hasattr(reg, "network_") and hasattr(reg, "x_mean_"):
            # standardise in float64 as TorchMLPRegressor.predict does (its torch_forward works
            # in float32, which a near-constant feature with a tiny scale turns into noise)
            self.mlp = reg
            self.network = reg.network_
            self.register_buffer("x_mean", torch.as_tensor(reg.x_mean_, dtype=torch.float64))
            self.register_buffer("x_scale", torch.as_tensor(reg.x_scale_, dtype=torch.float64))
        else:
            raise ValueError(f"no differentiable form for a {type(reg).__name__} regressor")

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Latency (ms) the regressor gives the expected features of ``probs``."""
        feats, table_sum = self.features(probs)
        if self.mlp is None:
            out = feats @ self.w + self.b
        else:
            z = ((feats - self.x_mean) / self.x_scale).to(torch.float32)
            out = self.network(z)[:, 0].to(feats.dtype) * self.mlp.y_scale_ + self.mlp.y_mean_
        if self.residual:
            if table_sum is None:
                table_sum = self.table(probs.to(torch.float64))
            out = out + torch.log(table_sum)
        return torch.exp(out)


class _Affine(nn.Module):
    """``max(coef * inner + intercept, floor * inner)``: the affine predictors' form."""

    def __init__(self, inner: nn.Module, coef: float, intercept: float, floor: float = 0.0):
        super().__init__()
        self.inner, self.coef, self.intercept = inner, float(coef), float(intercept)
        self.floor = float(floor)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        x = self.inner(probs)
        return torch.maximum(self.coef * x + self.intercept, self.floor * x)


class _Madds(nn.Module):
    """Expected total MAdds (``exp`` of the counts part's first feature, log MAdds)."""

    def __init__(self, features):
        super().__init__()
        self.features = RelaxedFeatures(features)
        self.col = list(features.feature_names_out_).index("log_madds")

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        feats, _ = self.features(probs)
        return torch.exp(feats[:, self.col])


def relaxed_latency(predictor, *, seed: int = 0) -> tuple[nn.Module, dict]:
    """A torch module ``probs (n, onehot_width) -> ms (n,)`` for a fitted latency predictor.

    Exact on one-hots (equals ``predictor.predict``) for TableSum, FlopsLinear and
    learned / residual models with a ridge, Huber or MLP regressor; any other model
    (e.g. XGBoost) is distilled into an MLP on log latency. Returns ``(module, info)``.
    """
    name = type(predictor).__name__
    if isinstance(predictor, TableSum):
        mod = _Affine(ExpectedTableLatency(predictor.features_.compiled_), predictor.coef_,
                      predictor.intercept_, predictor.floor_ratio_)
        return mod, {"kind": "expected-table-sum", "predictor": name}
    if isinstance(predictor, FlopsLinear):
        mod = _Affine(_Madds(predictor.features_), predictor.coef_, predictor.intercept_,
                      predictor.floor_ratio_)
        return mod, {"kind": "expected-madds-linear", "predictor": name}
    if isinstance(predictor, LatencyModel):
        if predictor.model == "mlp" and tuple(predictor.features_.parts) == ("encoding",) \
                and not predictor.residual:
            return RelaxedMLP(predictor), {"kind": "relaxed-mlp", "predictor": name}
        try:
            return RelaxedLearnedLatency(predictor), {
                "kind": "expected-features", "predictor": f"{name}({predictor.model})"}
        except ValueError:
            pass
        from .distill import distill

        space = predictor.features_.space_
        mod, info = distill(lambda idx: predictor.predict(idx), space, seed=seed, log_target=True)
        return mod, {"kind": "distilled-mlp", "predictor": f"{name}({predictor.model})", **info}
    raise ValueError(f"no differentiable form for a {name} latency predictor")
