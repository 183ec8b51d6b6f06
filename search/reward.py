"""The MnasNet multi-objective reward (Tan et al. 2019, Eq. 2-3).

``reward = ACC * (LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else ``beta``.

Conventions: accuracy is a *fraction* in [0, 1] (values that look like percentages
are rejected with a clear error), latency and target are in milliseconds (any one
unit works as long as both agree) and must be positive and finite.

- soft constraint: ``alpha = beta = -0.07`` (doubling the latency costs about 5%
  relative accuracy);
- hard constraint: ``alpha = 0, beta = -1`` (no bonus below the target, a steep
  penalty above it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

SOFT_EXPONENT = -0.07


def _as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    return arr


def check_accuracy(accuracy: ArrayLike) -> np.ndarray:
    """Validate accuracies as fractions in [0, 1]; percentages get a clear ``ValueError``."""
    acc = _as_float_array(accuracy, "accuracy")
    if not np.isfinite(acc).all():
        raise ValueError("accuracy must be finite (got NaN or inf)")
    if (acc < 0).any():
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {acc.min():g}")
    if (acc > 1).any():
        worst = float(acc.max())
        hint = " (it looks like a percentage: divide by 100)" if worst <= 100 else ""
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {worst:g}{hint}")
    return acc


def check_latency(latency_ms: ArrayLike, name: str = "latency_ms") -> np.ndarray:
    """Validate latencies: positive and finite."""
    lat = _as_float_array(latency_ms, name)
    if not np.isfinite(lat).all():
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    if (lat <= 0).any():
        raise ValueError(f"{name} must be > 0, got {lat.min():g}")
    return lat


@dataclass(frozen=True)
class MnasReward:
    """``ACC * (LAT / T) ** w``, ``w = alpha`` if ``LAT <= T`` else ``beta``.

    ``target_ms`` is T (> 0). Call with scalars (returns a float) or arrays
    (broadcast, returns an array).
    """

    target_ms: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("target_ms", "alpha", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"{name} must be finite, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.target_ms <= 0:
            raise ValueError(f"target_ms must be > 0, got {self.target_ms:g}")

    @classmethod
    def soft(cls, target_ms: float, exponent: float = SOFT_EXPONENT) -> "MnasReward":
        """Soft constraint: ``alpha = beta = exponent`` (default -0.07)."""
        return cls(target_ms, exponent, exponent)

    @classmethod
    def hard(cls, target_ms: float) -> "MnasReward":
        """Hard constraint: ``alpha = 0, beta = -1``."""
        return cls(target_ms, 0.0, -1.0)

    @classmethod
    def from_name(cls, kind: str, target_ms: float) -> "MnasReward":
        """``'soft'`` or ``'hard'`` by name."""
        if kind == "soft":
            return cls.soft(target_ms)
        if kind == "hard":
            return cls.hard(target_ms)
        raise ValueError(f"unknown reward kind {kind!r}; expected 'soft' or 'hard'")

    def exponent(self, latency_ms: ArrayLike) -> np.ndarray | float:
        """The exponent ``w`` used at each latency."""
        lat = check_latency(latency_ms)
        w = np.where(lat <= self.target_ms, self.alpha, self.beta)
        return float(w) if w.ndim == 0 else w

    def __call__(self, accuracy: ArrayLike, latency_ms: ArrayLike) -> np.ndarray | float:
        """Reward of accuracy (fraction) at latency (ms); broadcast over arrays."""
        acc = check_accuracy(accuracy)
        lat = check_latency(latency_ms)
        try:
            acc_b, lat_b = np.broadcast_arrays(acc, lat)
        except ValueError:
            raise ValueError(f"accuracy shape {acc.shape} and latency_ms shape {lat.shape} "
                             f"do not broadcast") from None
        w = np.where(lat_b <= self.target_ms, self.alpha, self.beta)
        out = acc_b * np.power(lat_b / self.target_ms, w)
        return float(out) if out.ndim == 0 else out

    def describe(self) -> str:
        """One line, e.g. ``ACC * (LAT/75ms)^w, w = -0.07 / -0.07``."""
        return f"ACC * (LAT/{self.target_ms:g}ms)^w, w = {self.alpha:g} if LAT <= T else {self.beta:g}"
