"""A search space compiled into per-position lookup tensors.

For each position ``p`` (a block, or a layer in layer-wise spaces) and each
possible input state ``i`` (:meth:`SearchSpace.position_states`: the spatial size and
width, and whatever else a space's layers depend on), every combination ``c`` of that
position's choices gives layers whose operator latencies, MAdds and parameters are
summed once, here: ``lat[p][i, c]``, and the state it hands on, ``nxt[p][i, c]``.
Evaluating a batch of index vectors is then a few gathers per position (vectorised
TableSum, 10^6 architectures per second), and the same tensors give the differentiable
expected latency of a relaxed architecture (:mod:`surrogate.predict.differentiable`).

A space whose resolution is a decision (``ofa-mbv3``) starts with that decision's
position, whose layers are the stem at that resolution; the state it hands on carries
the spatial size, so a table sum is a gather over (resolution, position, choice) and the
expected latency sums over the resolution's probabilities exactly. Such a compiled
space has no shared stem (``stem`` None, ``stem_ms`` 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from space.arch import LayerConfig
from space.counting import conv_counts, layer_counts
from space.spaces.base import SearchSpace, _product


def op_counts(lc: LayerConfig):
    """MAdds / params of an operator of a position: a layer, or the stem conv."""
    if lc.op == "stem":
        return conv_counts(lc.in_ch, lc.out_ch, lc.kernel, lc.out_h * lc.out_w)
    return layer_counts(lc)


@dataclass
class Position:
    """Lookup tensors of one position, indexed ``[input_state, combo]``."""

    cards: tuple[int, ...]
    states: list[tuple]      # input states (size, width, ...), the rows of the tensors
    lat: np.ndarray          # (n_in, n_combo) summed op latency, ms (nan if unknown)
    madds: np.ndarray        # (n_in, n_combo)
    params: np.ndarray       # (n_in, n_combo)
    n_layers: np.ndarray     # (n_in, n_combo)
    act_elems: np.ndarray    # (n_in, n_combo) elements read by the block's layers
    nxt: np.ndarray          # (n_in, n_combo) index into the next position's in_widths
    missing: dict[str, LayerConfig] = field(default_factory=dict)

    @property
    def n_combo(self) -> int:
        """Number of joint choice combinations at this position."""
        return int(np.prod(self.cards))

    @property
    def in_widths(self) -> list[int]:
        """The input width of each state."""
        return [s[1] for s in self.states]


@dataclass
class CompiledSpace:
    """Per-position tensors for one space and one operator-latency function."""

    space: SearchSpace
    positions: list[Position]
    stem_ms: float
    stem: LayerConfig | None      # None: the stem is in the resolution position's layers
    head_ms: np.ndarray           # (n_final_states,)
    heads: list[LayerConfig]
    offsets: list[int]

    def __post_init__(self) -> None:
        st = self.stem
        self.stem_counts = (0, 0)
        if st is not None:
            c = conv_counts(st.in_ch, st.out_ch, st.kernel, st.out_h * st.out_w)
            self.stem_counts = (c.madds, c.params)
        hm, hp = [], []
        for h in self.heads:
            m = p = 0
            if h.out_ch:
                c = conv_counts(h.in_ch, h.out_ch, 1, h.h * h.w)
                m, p = c.madds, c.params
            last = h.out_ch or h.in_ch
            if h.mix_ch:  # MobileNetV3's 1x1 conv after the pool
                c = conv_counts(last, h.mix_ch, 1, 1, bias=h.mix_norm == "bias",
                                bn=h.mix_norm == "bn")
                m, p, last = m + c.madds, p + c.params, h.mix_ch
            hm.append(m + last * h.num_classes)
            hp.append(p + last * h.num_classes + (h.num_classes if h.fc_bias else 0))
        self.head_madds = np.array(hm, dtype=np.float64)
        self.head_params = np.array(hp, dtype=np.float64)

    @classmethod
    def build(cls, space: SearchSpace, op_ms: Callable[[LayerConfig], float] | None = None) -> "CompiledSpace":
        """Compile ``space``; ``op_ms(lc)`` gives an operator's latency (nan if unknown)."""
        op_ms = op_ms or (lambda lc: math.nan)
        all_states = space.position_states()
        cache: dict[str, float] = {}
        positions = []
        for p, pos in enumerate(space.positions):
            states = all_states[p]
            next_index = {s: i for i, s in enumerate(all_states[p + 1])}
            cards = tuple(d.n for d in pos)
            n_c = int(np.prod(cards))
            shape = (len(states), n_c)
            lat = np.zeros(shape)
            madds = np.zeros(shape)
            params = np.zeros(shape)
            n_layers = np.zeros(shape)
            act = np.zeros(shape)
            nxt = np.zeros(shape, dtype=np.int64)
            missing: dict[str, LayerConfig] = {}
            for ci, sub in enumerate(_product(list(cards))):
                for si, state in enumerate(states):
                    layers, after = space.position_layers(p, sub, state)
                    if after not in next_index:
                        raise RuntimeError(f"{space.name}: position {p} hands on state {after}, "
                                           f"which position_states() does not list")
                    nxt[si, ci] = next_index[after]
                    t = 0.0
                    for lc in layers:
                        c = op_counts(lc)
                        madds[si, ci] += c.madds
                        params[si, ci] += c.params
                        act[si, ci] += lc.h * lc.w * lc.in_ch
                        if lc.is_identity:
                            continue
                        if lc.op != "stem":
                            n_layers[si, ci] += 1
                        k = lc.key()
                        if k not in cache:
                            cache[k] = float(op_ms(lc))
                        if not math.isfinite(cache[k]):
                            missing[k] = lc
                        t += cache[k]
                    lat[si, ci] = t
            positions.append(Position(cards, list(states), lat, madds, params, n_layers, act, nxt,
                                      missing))
        stem = space.stem_config()
        heads = [space.head_config(s) for s in all_states[-1]]
        offs, o = [], 0
        for pos in space.positions:
            offs.append(o)
            o += len(pos)
        return cls(space, positions, 0.0 if stem is None else float(op_ms(stem)), stem,
                   np.array([float(op_ms(h)) for h in heads]), heads, offs)

    # -- queries -------------------------------------------------------------------
    def missing_ops(self) -> list[LayerConfig]:
        """Operator configurations whose latency is unknown (nan)."""
        out: dict[str, LayerConfig] = {}
        for p in self.positions:
            out.update(p.missing)
        if self.stem is not None and not math.isfinite(self.stem_ms):
            out[self.stem.key()] = self.stem
        for h, v in zip(self.heads, self.head_ms):
            if not math.isfinite(v):
                out[h.key()] = h
        return [out[k] for k in sorted(out)]

    def _combos(self, idx: np.ndarray, p: int) -> np.ndarray:
        cards = self.positions[p].cards
        cols = idx[:, self.offsets[p]: self.offsets[p] + len(cards)]
        if len(cards) == 1:
            return cols[:, 0]
        strides = np.cumprod((1,) + cards[:0:-1])[::-1]  # C order, as np.ravel_multi_index
        return cols @ strides.astype(np.int64)

    def _flat(self, p: int, key: str) -> np.ndarray:
        """``positions[p].<key>`` raveled (cached), for ``take`` on ``state * n_combo + combo``."""
        cache = self.__dict__.setdefault("_flat_cache", {})
        arr = cache.get((p, key))
        if arr is None:
            arr = cache[(p, key)] = np.ascontiguousarray(getattr(self.positions[p], key)).ravel()
        return arr

    def terms(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Per-position latency/MAdds/params/layers/activations for a batch of index vectors.

        Returns arrays of shape (n, n_positions) plus ``stem_ms`` and ``head_ms`` (n,).
        Index vectors must be canonical (``space.sample_indices`` gives canonical ones).
        """
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim == 1:
            idx = idx[None, :]
        n = idx.shape[0]
        state = np.zeros(n, dtype=np.int64)
        keys = ("lat", "madds", "params", "n_layers", "act_elems")
        npos = len(self.positions)
        cols = {k: np.empty((npos, n)) for k in keys}  # row per position: contiguous writes
        for p, pos in enumerate(self.positions):
            lin = state * pos.n_combo + self._combos(idx, p)
            for k in keys:
                self._flat(p, k).take(lin, out=cols[k][p])
            state = self._flat(p, "nxt").take(lin)
        out = {k: v.T for k, v in cols.items()}
        out["stem_ms"] = np.full(n, self.stem_ms)
        out["head_ms"] = self.head_ms[state]
        out["final_state"] = state
        out["total_madds"] = out["madds"].sum(axis=1) + self.stem_counts[0] + self.head_madds[state]
        out["total_params"] = out["params"].sum(axis=1) + self.stem_counts[1] + self.head_params[state]
        return out

    def table_sum(self, idx: np.ndarray) -> np.ndarray:
        """Sum of operator latencies (stem + layers + head) per index vector, ms."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim == 1:
            idx = idx[None, :]
        n = idx.shape[0]
        state = np.zeros(n, dtype=np.int64)
        s = np.full(n, self.stem_ms)
        for p, pos in enumerate(self.positions):  # latency and next state only
            lin = state * pos.n_combo + self._combos(idx, p)
            s += self._flat(p, "lat").take(lin)
            state = self._flat(p, "nxt").take(lin)
        return s + self.head_ms[state]
