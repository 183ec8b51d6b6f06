"""Pareto tools: non-dominated sorting, 2-D fronts, exact hypervolume, front comparison.

Conventions
-----------
General functions (:func:`non_dominated_sort`, :func:`pareto_mask`) take an
``(n, k)`` array of objectives that are all *minimised* unless ``minimise`` says
otherwise per column. Point ``a`` dominates ``b`` when it is no worse in every
objective and strictly better in at least one; equal points do not dominate each
other (they share a rank).

The 2-D functions use the search's objectives explicitly: **latency_ms is
minimised, accuracy is maximised**. A *front* is an ``(m, 2)`` array of
``(latency_ms, accuracy)`` rows.

Hypervolume is the area (ms x accuracy-fraction units) of the region that the
points dominate inside the box bounded by the **reference point
(ref_latency, ref_accuracy)**: points with ``latency >= ref_latency`` or
``accuracy <= ref_accuracy`` contribute nothing. The reference point is always
an explicit argument; state it with any hypervolume you report (a common choice
is the target or the slowest latency of interest, and accuracy 0 or the worst
acceptable accuracy).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike


# -- validation ------------------------------------------------------------------------
def _points(points: ArrayLike, name: str = "points") -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric (n, k) array") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, k) array, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _signed(points: ArrayLike, minimise: bool | Sequence[bool]) -> np.ndarray:
    """Objectives as all-minimised (negating maximised columns)."""
    arr = _points(points)
    if isinstance(minimise, (bool, np.bool_)):
        return arr if minimise else -arr
    flags = np.asarray(list(minimise), dtype=bool)
    if flags.shape != (arr.shape[1],):
        raise ValueError(f"minimise has {flags.size} flags for {arr.shape[1]} objectives")
    return np.where(flags, arr, -arr)


def _lat_acc(latency_ms: ArrayLike, accuracy: ArrayLike | None) -> np.ndarray:
    """``(n, 2)`` (latency, accuracy) from two vectors or from one ``(n, 2)`` array."""
    if accuracy is None:
        pts = _points(latency_ms, "front")
        if pts.shape[1] != 2:
            raise ValueError(f"front must have 2 columns (latency_ms, accuracy), got {pts.shape[1]}")
        return pts
    lat = np.asarray(latency_ms, dtype=np.float64).ravel()
    acc = np.asarray(accuracy, dtype=np.float64).ravel()
    if lat.shape != acc.shape:
        raise ValueError(f"latency_ms ({lat.size}) and accuracy ({acc.size}) differ in length")
    return _points(np.stack([lat, acc], axis=1), "(latency_ms, accuracy)")


# -- dominance and sorting ---------------------------------------------------------------
def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether ``a`` dominates ``b`` (all objectives minimised)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return bool((a <= b).all() and (a < b).any())


def _ranks_2d(f: np.ndarray) -> np.ndarray:
    """Front ranks of unique 2-D minimisation points, O(n log n) sweep."""
    order = np.lexsort((f[:, 1], f[:, 0]))
    ranks = np.empty(len(f), dtype=np.int64)
    tails: list[float] = []  # per front, the smallest f2 so far (non-decreasing over fronts)
    for i in order:
        y = f[i, 1]
        r = bisect_right(tails, y)  # first front none of whose points dominates (unique points)
        if r == len(tails):
            tails.append(y)
        else:
            tails[r] = y
        ranks[i] = r
    return ranks


def _dominance_matrix(f: np.ndarray, chunk: int = 2048) -> np.ndarray:
    n = len(f)
    dom = np.zeros((n, n), dtype=bool)
    for s in range(0, n, chunk):
        a = f[s: s + chunk, None, :]
        dom[s: s + chunk] = (a <= f[None]).all(axis=2) & (a < f[None]).any(axis=2)
    return dom


def _ranks_kd(f: np.ndarray) -> np.ndarray:
    """Front ranks by peeling a (chunked) dominance matrix: O(n^2 k) time, n^2 bytes."""
    n = len(f)
    dom = _dominance_matrix(f)
    count = dom.sum(axis=0)
    ranks = np.full(n, -1, dtype=np.int64)
    current = np.flatnonzero(count == 0)
    r = 0
    while current.size:
        ranks[current] = r
        count = count - dom[current].sum(axis=0)
        count[ranks >= 0] = -1
        current = np.flatnonzero(count == 0)
        r += 1
    return ranks


def non_dominated_sort(points: ArrayLike, minimise: bool | Sequence[bool] = True) -> np.ndarray:
    """Front rank of each point (0 = non-dominated), shape ``(n,)``.

    ``points`` is ``(n, k)``; ``minimise`` is True (all minimised), False (all
    maximised) or one flag per column. Equal points share a rank. Two objectives
    use an O(n log n) sweep; more use a vectorised dominance matrix (n^2 bytes).
    """
    f = _signed(points, minimise)
    if len(f) == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(f, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    if uniq.shape[1] == 1:
        ranks = np.unique(uniq[:, 0], return_inverse=True)[1].ravel()
    elif uniq.shape[1] == 2:
        ranks = _ranks_2d(uniq)
    else:
        ranks = _ranks_kd(uniq)
    return ranks[inverse]


def pareto_mask(points: ArrayLike, minimise: bool | Sequence[bool] = True) -> np.ndarray:
    """Boolean mask of the non-dominated points (duplicates of a front point included)."""
    return non_dominated_sort(points, minimise) == 0


def lat_acc_ranks(latency_ms: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """Front ranks for (latency minimised, accuracy maximised)."""
    return non_dominated_sort(_lat_acc(latency_ms, accuracy), minimise=(True, False))


def pareto_front(latency_ms: ArrayLike, accuracy: ArrayLike | None = None, *,
                 unique: bool = False) -> np.ndarray:
    """Indices of the (latency min, accuracy max) Pareto front, sorted by latency.

    Pass two vectors, or one ``(n, 2)`` array of (latency_ms, accuracy) rows.
    Points with equal objectives are all kept unless ``unique`` (first index kept).
    """
    pts = _lat_acc(latency_ms, accuracy)
    idx = np.flatnonzero(non_dominated_sort(pts, minimise=(True, False)) == 0)
    idx = idx[np.lexsort((idx, pts[idx, 1], pts[idx, 0]))]
    if unique and idx.size:
        keep = np.ones(idx.size, dtype=bool)
        keep[1:] = (np.diff(pts[idx], axis=0) != 0).any(axis=1)
        idx = idx[keep]
    return idx


# -- hypervolume ---------------------------------------------------------------------------
def _check_ref(ref_latency: float, ref_accuracy: float) -> tuple[float, float]:
    try:
        rl, ra = float(ref_latency), float(ref_accuracy)
    except (TypeError, ValueError):
        raise ValueError(f"reference point must be two numbers, got ({ref_latency!r}, "
                         f"{ref_accuracy!r})") from None
    if not (np.isfinite(rl) and np.isfinite(ra)):
        raise ValueError(f"reference point must be finite, got ({rl}, {ra})")
    return rl, ra


def hypervolume_2d(latency_ms: ArrayLike, accuracy: ArrayLike | None = None, *,
                   ref_latency: float, ref_accuracy: float) -> float:
    """Exact area dominated by the points inside the reference box.

    Objectives: latency_ms minimised, accuracy maximised; the reference point is
    ``(ref_latency, ref_accuracy)``. Units are ms x accuracy. Pass two vectors or
    one ``(n, 2)`` array.
    """
    rl, ra = _check_ref(ref_latency, ref_accuracy)
    pts = _lat_acc(latency_ms, accuracy)
    pts = pts[(pts[:, 0] < rl) & (pts[:, 1] > ra)]
    if len(pts) == 0:
        return 0.0
    order = np.lexsort((-pts[:, 1], pts[:, 0]))  # latency asc, accuracy desc within ties
    lat, acc = pts[order, 0], pts[order, 1]
    best = np.maximum.accumulate(acc)  # best accuracy reachable at each latency step
    widths = np.diff(np.append(lat, rl))
    return float(np.sum(widths * (best - ra)))


def hypervolume_history(latency_ms: ArrayLike, accuracy: ArrayLike | None = None, *,
                        ref_latency: float, ref_accuracy: float) -> np.ndarray:
    """Hypervolume after each evaluation in order, shape ``(n,)`` (incremental).

    Keeps the current front as a staircase and updates the area by the exclusive
    contribution of each new point: O(log n) per dominated point, amortised
    O(log n + removed) otherwise; 10k evaluations take milliseconds.
    """
    rl, ra = _check_ref(ref_latency, ref_accuracy)
    pts = _lat_acc(latency_ms, accuracy)
    out = np.empty(len(pts), dtype=np.float64)
    fl: list[float] = []  # front latencies, ascending
    fa: list[float] = []  # front accuracies, ascending
    hv = 0.0
    for t, (lat, acc) in enumerate(pts.tolist()):
        if lat < rl and acc > ra:
            k = bisect_left(fl, lat)
            prev_acc = fa[k - 1] if k > 0 else ra
            same = k < len(fl) and fl[k] == lat and fa[k] >= acc  # an equal-latency point as good
            if prev_acc < acc and not same:
                # points at or after `lat` with accuracy <= acc are dominated by the new point
                r = k
                while r < len(fa) and fa[r] <= acc:
                    r += 1
                # old area over [lat, end): prev_acc until fl[k], then the removed steps
                end = fl[r] if r < len(fl) else rl
                old = 0.0
                x, h = lat, prev_acc
                for j in range(k, r):
                    old += (fl[j] - x) * (h - ra)
                    x, h = fl[j], fa[j]
                old += (end - x) * (h - ra)
                hv += (end - lat) * (acc - ra) - old
                fl[k:r] = [lat]
                fa[k:r] = [acc]
        out[t] = hv
    return out


# -- front comparison ------------------------------------------------------------------------
def _min_form(front: np.ndarray, scale: Sequence[float] | None) -> np.ndarray:
    """(latency, accuracy) -> minimisation form (latency, -accuracy), optionally scaled."""
    f = np.stack([front[:, 0], -front[:, 1]], axis=1)
    if scale is not None:
        s = np.asarray(scale, dtype=np.float64)
        if s.shape != (2,) or not (s > 0).all():
            raise ValueError(f"scale must be two positive numbers (latency, accuracy), got {scale!r}")
        f = f / s
    return f


def _nonempty(front: ArrayLike, name: str) -> np.ndarray:
    f = _lat_acc(front, None)
    if len(f) == 0:
        raise ValueError(f"{name} is empty")
    return f


def epsilon_additive(front_a: ArrayLike, front_b: ArrayLike,
                     scale: Sequence[float] | None = None) -> float:
    """Additive epsilon indicator I(A, B): the least eps by which A must improve
    (every objective) to weakly dominate every point of B. <= 0 iff A weakly
    dominates B. Objectives are divided by ``scale`` (latency, accuracy) if given.
    """
    a = _min_form(_nonempty(front_a, "front_a"), scale)
    b = _min_form(_nonempty(front_b, "front_b"), scale)
    diff = (a[:, None, :] - b[None, :, :]).max(axis=2)  # (|A|, |B|)
    return float(diff.min(axis=0).max())


def dominated_share(front_a: ArrayLike, front_b: ArrayLike) -> float:
    """Share of A's points dominated by at least one point of B (in [0, 1])."""
    a = _min_form(_nonempty(front_a, "front_a"), None)
    b = _min_form(_nonempty(front_b, "front_b"), None)
    dom = (b[:, None, :] <= a[None]).all(axis=2) & (b[:, None, :] < a[None]).any(axis=2)
    return float(dom.any(axis=0).mean())


def igd(front: ArrayLike, reference_front: ArrayLike,
        scale: Sequence[float] | None = None) -> float:
    """Inverted generational distance: mean Euclidean distance from each point of
    the reference front to its nearest point of ``front`` (after ``scale``)."""
    a = _min_form(_nonempty(front, "front"), scale)
    r = _min_form(_nonempty(reference_front, "reference_front"), scale)
    d = np.sqrt(((r[:, None, :] - a[None]) ** 2).sum(axis=2))
    return float(d.min(axis=1).mean())


def compare_fronts(front_a: ArrayLike, front_b: ArrayLike, *, ref_latency: float,
                   ref_accuracy: float) -> dict:
    """Compare front A to front B (e.g. a search result to the true front).

    Returns hypervolumes, their ratio ``hv_a / hv_b``, the additive epsilon
    I(A, B), the shares of each front dominated by the other and IGD of A against
    B. Epsilon and IGD are normalised by the box between the ideal point of A u B
    and the reference point, so both objectives count alike.
    """
    rl, ra = _check_ref(ref_latency, ref_accuracy)
    a = _nonempty(front_a, "front_a")
    b = _nonempty(front_b, "front_b")
    hv_a = hypervolume_2d(a, ref_latency=rl, ref_accuracy=ra)
    hv_b = hypervolume_2d(b, ref_latency=rl, ref_accuracy=ra)
    both = np.vstack([a, b])
    s_lat = rl - both[:, 0].min()
    s_acc = both[:, 1].max() - ra
    scale = (s_lat if s_lat > 0 else 1.0, s_acc if s_acc > 0 else 1.0)
    return {
        "reference_point": {"latency_ms": rl, "accuracy": ra},
        "hv_a": hv_a, "hv_b": hv_b,
        "hv_ratio": hv_a / hv_b if hv_b > 0 else float("nan"),
        "epsilon_additive": epsilon_additive(a, b, scale),
        "share_a_dominated_by_b": dominated_share(a, b),
        "share_b_dominated_by_a": dominated_share(b, a),
        "igd": igd(a, b, scale),
        "scale": {"latency_ms": scale[0], "accuracy": scale[1]},
    }
