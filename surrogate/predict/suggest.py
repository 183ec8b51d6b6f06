"""Which K networks to time on a new device.

:func:`suggest_timings` picks K members of a candidate pool (default: seeded random
members of the space) by one of two rules:

- ``doptimal`` (default): greedy D-optimal design for the linear model that
  :class:`~surrogate.predict.multisource.MultiSourceTransfer` fits. Each step takes
  the candidate whose prediction is least determined by the ones already chosen:
  the largest ``x' (lam I + X_S' X_S)^-1 x``. ``x`` holds the standardised architecture
  features and, when sources are given, the standardised log source predictions
  (weighted by ``source_weight``). So the picks spread over the operator choices and
  over the range where the sources disagree. Rank-one updates keep each step at
  O(pool x features).
- ``kcenter``: farthest-point (k-center greedy) on the same standardised features:
  every pick is the candidate farthest from all chosen so far.

Both start from the candidate nearest the pool's centre, and both are deterministic
given the pool. ``bench/transfer_loo.py`` measures them against random K.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from space.spaces import get_space

from .features import ArchFeatures, as_indices

METHODS = ("doptimal", "kcenter")


def design_matrix(space: str, idx: np.ndarray, sources: Mapping[str, Any] | None = None, *,
                  parts: tuple[str, ...] = ("encoding", "counts"),
                  source_weight: float = 3.0) -> np.ndarray:
    """Standardised features (columns with no spread dropped) plus weighted, standardised
    log source predictions: the rows the suggestion rules compare."""
    F = ArchFeatures(space=space, parts=tuple(parts)).fit().transform(idx)
    cols = [_standardise(F)]
    if sources:
        from .multisource import source_matrix

        # each source column weighs as much as `source_weight` feature columns
        cols.append(_standardise(np.log(source_matrix(sources, idx))) * np.sqrt(source_weight))
    return np.column_stack(cols)


def _standardise(A: np.ndarray) -> np.ndarray:
    sd = A.std(axis=0)
    keep = sd > 1e-12
    return (A[:, keep] - A[:, keep].mean(axis=0)) / sd[keep]


def _doptimal(D: np.ndarray, k: int, lam: float) -> list[int]:
    n, p = D.shape
    score = np.einsum("ij,ij->i", D, D) / lam  # x' M x with M = I / lam
    M = np.eye(p) / lam
    chosen: list[int] = [int(np.argmin(score))]  # nearest the centre first
    for _ in range(k):
        i = chosen[-1]
        u = M @ D[i]
        denom = 1.0 + D[i] @ u
        M -= np.outer(u, u) / denom
        score -= (D @ u) ** 2 / denom
        if len(chosen) == k:
            break
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


def _kcenter(D: np.ndarray, k: int) -> list[int]:
    chosen = [int(np.argmin(np.einsum("ij,ij->i", D, D)))]
    dist = np.linalg.norm(D - D[chosen[0]], axis=1)
    while len(chosen) < k:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(D - D[i], axis=1))
    return chosen


def suggest_timings(space: str, k: int, *, pool=None, sources: Mapping[str, Any] | None = None,
                    method: str = "doptimal", n_pool: int = 5000, seed: int = 0,
                    lam: float = 1.0, source_weight: float = 3.0) -> np.ndarray:
    """Positions in ``pool`` of the ``k`` networks worth timing (in the order chosen).

    ``pool``: candidate networks (archs, strings or an index array; default ``n_pool``
    seeded random members of ``space``, returned by :func:`suggestion_pool`).
    ``sources``: name -> predictor of known devices, whose disagreement the
    ``doptimal`` rule also spreads over. ``lam``: the design's ridge. Repeated
    networks in the pool may both be picked only if the pool has fewer than ``k``
    distinct rows.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    sp = get_space(space)
    idx = suggestion_pool(space, n_pool, seed) if pool is None else as_indices(sp, pool)
    if not 1 <= k <= len(idx):
        raise ValueError(f"k: expected 1..{len(idx)} (the pool's size), got {k}")
    D = design_matrix(space, idx, sources, source_weight=source_weight)
    picks = _doptimal(D, k, lam) if method == "doptimal" else _kcenter(D, k)
    return np.asarray(picks, dtype=np.int64)


def suggestion_pool(space: str, n: int = 5000, seed: int = 0) -> np.ndarray:
    """``n`` seeded random members of ``space`` (canonical index vectors), distinct rows."""
    sp = get_space(space)
    idx = sp.sample_indices(np.random.default_rng(seed), n)
    canon = np.array([sp.canonical(r) for r in idx], dtype=np.int64).reshape(len(idx), -1)
    _, first = np.unique(canon, axis=0, return_index=True)
    return canon[np.sort(first)]
