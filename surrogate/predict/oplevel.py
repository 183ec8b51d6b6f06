"""Operator-level latency model: predicts operator configurations a table never measured.

In the spirit of nn-Meter's kernel predictors: a regressor on an operator's
geometry and cost (widths, resolution, kernel, expansion, stride, SE, residual,
groups, FLOPs, parameters and memory traffic), fitted on the measured rows of one
or more operator tables, in log space. Plugged into an
:class:`~surrogate.predict.optable.OpTable` as ``fallback`` it lets any
architecture get a prediction; :meth:`OpLevelModel.missing` lists what to measure
instead when the device is at hand (``mnas measure ops``).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from space.arch import ACTS, LayerConfig
from space.blockstring import parse_op_key
from space.counting import conv_counts, layer_counts

from .regressors import _check_y, make_regressor

OP_KINDS = ("mbconv", "irf", "conv", "skip", "stem", "head", "fused", "fusedp")
RESIDUALS = ("none", "add", "pool")


def row_to_config(row: Mapping) -> LayerConfig:
    """Rebuild the :class:`LayerConfig` of an operator-table row.

    From its ``op_key`` when it has one (the key holds every field, the MobileNetV3
    forms included; the row's columns must agree with it), else from its columns.
    """
    if "op_key" in row:
        lc = config_from_key(row["op_key"])
        for col in ("op", "h", "w", "in_ch", "out_ch", "kernel", "stride"):
            if col in row and str(row[col]) != str(getattr(lc, col)):
                raise ValueError(f"row {row['op_key']!r}: column {col}={row[col]!r} disagrees with "
                                 f"its key ({getattr(lc, col)!r})")
        return lc
    skip = {"add": "identity", "pool": "pool", "none": "none"}[row["residual"]]
    return LayerConfig(op=row["op"], h=int(row["h"]), w=int(row["w"]), in_ch=int(row["in_ch"]),
                       out_ch=int(row["out_ch"]), kernel=int(row["kernel"]), stride=int(row["stride"]),
                       expand=int(row["expand"]), se=float(row["se"]), skip=skip,
                       groups=int(row["groups"]), act=row["act"],
                       expand_divisor=int(row["expand_divisor"]), num_classes=int(row["num_classes"]))


def config_from_key(key: str) -> LayerConfig:
    """Rebuild the :class:`LayerConfig` of an operator key (:meth:`LayerConfig.key`);
    :func:`space.blockstring.parse_op_key` owns the key grammar.

    ``ValueError`` names the key when it is malformed or describes no configuration
    whose key it is (e.g. a key written by another version of the library).
    """
    return parse_op_key(key)


def op_cost(lc: LayerConfig) -> tuple[float, float]:
    """(MAdds, params) of any operator configuration, stem and head included."""
    if lc.op == "stem":
        c = conv_counts(lc.in_ch, lc.out_ch, lc.kernel, lc.out_h * lc.out_w)
        return float(c.madds), float(c.params)
    if lc.op == "head":
        m = p = 0.0
        if lc.out_ch:
            c = conv_counts(lc.in_ch, lc.out_ch, 1, lc.h * lc.w)
            m, p = float(c.madds), float(c.params)
        last = lc.out_ch or lc.in_ch
        if lc.mix_ch:  # MobileNetV3: a 1x1 conv after the pool
            c = conv_counts(last, lc.mix_ch, 1, 1, bias=lc.mix_norm == "bias", bn=lc.mix_norm == "bn")
            m, p, last = m + float(c.madds), p + float(c.params), lc.mix_ch
        fc = last * lc.num_classes
        return m + fc, p + fc + (lc.num_classes if lc.fc_bias else 0)
    c = layer_counts(lc)
    return float(c.madds), float(c.params)


#: Activations TFLite/XNNPACK fuse into the preceding convolution as an output clamp
#: (``fused_activation_function``), so they cost nothing apart: ReLU and ReLU6 alike.
CLAMP_ACTS = ("relu", "relu6")


def _act_features(act: str) -> list[float]:
    """Activation by cost class: a fused clamp, or a separate elementwise op (one each).

    A one-hot over :data:`ACTS` would leave an activation no table measured (ReLU6:
    MobileNetV2) on the trees' "not ReLU" branches, i.e. priced like SiLU.
    """
    if act not in ACTS:
        raise ValueError(f"activation {act!r}: expected one of {ACTS}")
    return [float(act in CLAMP_ACTS), *[float(act == a) for a in ACTS if a not in CLAMP_ACTS]]


def op_features(configs: Sequence[LayerConfig]) -> np.ndarray:
    """Numeric features of operator configurations."""
    rows = []
    for lc in configs:
        madds, params = op_cost(lc)
        mid = lc.mid_ch
        out_hw = lc.out_h * lc.out_w
        mem = lc.h * lc.w * lc.in_ch + out_hw * lc.out_ch + (lc.h * lc.w + out_hw) * mid
        rows.append([
            *[float(lc.op == k) for k in OP_KINDS],
            *[float(lc.residual == r) for r in RESIDUALS],
            *_act_features(lc.act),
            math.log(lc.h), math.log(lc.in_ch), math.log(max(lc.out_ch, 1)), math.log(mid),
            lc.kernel, lc.stride, lc.expand, lc.se, float(lc.se_ch), lc.groups,
            float(lc.se > 0 and lc.se_gate != "sigmoid"),  # hard-sigmoid gate: ADD/RELU6/MUL
            float(lc.se > 0 and lc.se_inner_act not in CLAMP_ACTS),
            math.log1p(madds), math.log1p(params), math.log1p(mem), math.log1p(lc.num_classes),
            math.log1p(mid * out_hw * lc.kernel * lc.kernel),  # depthwise work
        ])
    return np.asarray(rows, dtype=np.float64)


class OpLevelModel(RegressorMixin, BaseEstimator):
    """Regressor from operator configuration to latency (ms); fitted on table rows.

    ``fit(configs, y)`` takes :class:`LayerConfig` objects (or table rows) and their
    median latencies.
    """

    def __init__(self, model: str = "xgb", model_params: dict | None = None,
                 random_state: int | None = 0):
        self.model = model
        self.model_params = model_params
        self.random_state = random_state

    @staticmethod
    def _configs(X) -> list[LayerConfig]:
        out = []
        for i, x in enumerate(X):
            if isinstance(x, LayerConfig):
                out.append(x)
            elif isinstance(x, Mapping):
                out.append(row_to_config(x))
            else:
                raise ValueError(f"item {i}: expected a LayerConfig or an operator-table row, "
                                 f"got {type(x).__name__}")
        if not out:
            raise ValueError("no operator configurations given")
        return out

    def fit(self, X, y):
        """Fit log-latency on operator features of the configurations ``X``; returns self."""
        configs = self._configs(X)
        y = _check_y(y, len(configs))
        F = op_features(configs)
        self.regressor_ = make_regressor(self.model, self.random_state, **(self.model_params or {}))
        self.regressor_.fit(F, np.log(y))
        self.known_ = {lc.key() for lc in configs}
        self.n_features_in_ = F.shape[1]
        return self

    def predict(self, X):
        """Predicted latency (ms) of each operator configuration."""
        check_is_fitted(self, "regressor_")
        return np.exp(self.regressor_.predict(op_features(self._configs(X))))

    def predict_op(self, lc: LayerConfig) -> float:
        """One operator's latency (ms); the ``fallback`` signature of OpTable."""
        return float(self.predict([lc])[0])

    def missing(self, configs: Iterable[LayerConfig]) -> list[LayerConfig]:
        """Configurations not in the training table (candidates to measure)."""
        check_is_fitted(self, "regressor_")
        return [lc for lc in configs if lc.key() not in self.known_ and not lc.is_identity]
