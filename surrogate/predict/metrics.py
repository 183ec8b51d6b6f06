"""Accuracy of latency predictions and the predicted-vs-measured plot."""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np


def latency_metrics(y_true, y_pred) -> dict:
    """``n``, share within +-5% / +-10%, MAPE, RMSE (ms), Kendall tau, Spearman rho."""
    from scipy.stats import kendalltau, spearmanr

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"need equal, non-empty arrays; got {y.shape} and {p.shape}")
    if (y <= 0).any():
        raise ValueError("measured latencies must be positive")
    rel = np.abs(p / y - 1.0)
    ok = np.isfinite(p)
    tau = float(kendalltau(y, p).statistic) if y.size > 1 and ok.all() else float("nan")
    rho = float(spearmanr(y, p).statistic) if y.size > 1 and ok.all() else float("nan")
    return {"n": int(y.size), "within_5pct": float(np.mean(rel <= 0.05)),
            "within_10pct": float(np.mean(rel <= 0.10)), "mape": float(np.mean(rel)),
            "rmse_ms": float(np.sqrt(np.mean((p - y) ** 2))), "kendall_tau": tau, "spearman": rho}


def plot_predicted_vs_measured(y_true, preds: Mapping[str, np.ndarray], path: str | os.PathLike,
                               title: str = "") -> str:
    """Scatter of predicted vs measured latency for several predictors; writes a PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    y = np.asarray(y_true, dtype=np.float64)
    fig = Figure(figsize=(5.5, 5.0), dpi=120)
    ax = fig.subplots()
    lo, hi = float(y.min()), float(y.max())
    for name, p in preds.items():
        p = np.asarray(p, dtype=np.float64)
        m = latency_metrics(y, p)
        ax.scatter(y, p, s=9, alpha=0.6,
                   label=f"{name}: {100 * m['within_10pct']:.1f}% in ±10%, MAPE {100 * m['mape']:.1f}%")
        lo, hi = min(lo, float(np.nanmin(p))), max(hi, float(np.nanmax(p)))
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.plot(xs, xs * 1.1, "k:", lw=0.6)
    ax.plot(xs, xs * 0.9, "k:", lw=0.6)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    from ..atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    return str(path)
