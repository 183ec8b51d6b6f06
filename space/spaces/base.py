"""The interface every search space implements.

A space is a list of categorical :class:`Decision` s. An architecture in the space
is a vector of choice indices (``idx``, one int per decision). Spaces map index
vectors to :class:`~space.arch.Arch` and back, sample, mutate, encode for learned
models (one-hot and ordinal, vectorised over batches) and enumerate the distinct
per-layer operator configurations a latency table must cover.

Equivalent index vectors (that build the same network) share one canonical form;
:meth:`SearchSpace.to_arch` always builds the canonical network, and
:meth:`SearchSpace.from_arch` returns canonical indices.

Per-position lookup tables (:class:`~surrogate.predict.compiled.CompiledSpace`) read a
space through :meth:`SearchSpace.position_states` and :meth:`SearchSpace.position_layers`:
a *state* is what a position's layers depend on besides its own choices (``(spatial
size, width)`` by default; more where a space needs it). A space may make the input
resolution a decision (:attr:`SearchSpace.resolution_decision`): it is then the first
position, on its own, and its layers are the stem at that resolution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..arch import Arch, Block, LayerConfig


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and its choices (display values)."""

    name: str
    choices: tuple

    @property
    def n(self) -> int:
        """Number of choices."""
        return len(self.choices)


class SearchSpace:
    """Base class. Subclasses define ``name``, ``positions`` and ``_make_block``.

    A *position* is a group of consecutive decisions that produce one stage (or
    nothing); ``_make_block(pos, sub_idx, in_ch)`` returns that stage's Block or
    None.
    """

    name: str = ""
    description: str = ""
    #: per position, the decisions it owns
    positions: tuple[tuple[Decision, ...], ...] = ()
    #: architecture-level settings shared by every member
    arch_defaults: dict = {}
    #: index of the decision picking the input size (choices in pixels), None where
    #: ``arch_defaults`` fixes it; it must be the first position, on its own
    resolution_decision: int | None = None

    # -- structure ----------------------------------------------------------------
    @property
    def decisions(self) -> tuple[Decision, ...]:
        """All decisions, position by position (the encoding order)."""
        pos = self.positions
        memo = self.__dict__.get("_decisions_memo")
        if memo is None or memo[0] is not pos:  # hot path of canonical(), encodings
            memo = (pos, tuple(d for p in pos for d in p))
            self.__dict__["_decisions_memo"] = memo
        return memo[1]

    @property
    def cardinalities(self) -> np.ndarray:
        """Number of choices of each decision."""
        return np.array([d.n for d in self.decisions], dtype=np.int64)

    @property
    def n_decisions(self) -> int:
        """Number of decisions (length of an index vector)."""
        return len(self.decisions)

    @property
    def size(self) -> int:
        """Number of index vectors (before merging equivalent ones)."""
        return math.prod(d.n for d in self.decisions)

    @property
    def onehot_width(self) -> int:
        """Width of the one-hot encoding."""
        return int(self.cardinalities.sum())

    def _offsets(self) -> list[int]:
        out, o = [], 0
        for pos in self.positions:
            out.append(o)
            o += len(pos)
        return out

    # -- validation -----------------------------------------------------------------
    def check_indices(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Validate one index vector; ``ValueError`` names the bad decision."""
        try:
            vals = tuple(int(v) for v in idx)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: expected a sequence of {self.n_decisions} ints, "
                             f"got {idx!r}") from None
        if len(vals) != self.n_decisions:
            raise ValueError(f"{self.name}: expected {self.n_decisions} decisions, got {len(vals)}")
        for v, d in zip(vals, self.decisions):
            if not 0 <= v < d.n:
                raise ValueError(f"{self.name}: decision {d.name!r} index {v} out of range "
                                 f"0..{d.n - 1} (choices {list(d.choices)})")
        return vals

    def _check_batch(self, idx: np.ndarray) -> np.ndarray:
        arr = np.asarray(idx)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_decisions:
            raise ValueError(f"{self.name}: expected an (n, {self.n_decisions}) index array, "
                             f"got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{self.name}: index array must be integer, got {arr.dtype}")
        card = self.cardinalities
        if (arr < 0).any() or (arr >= card).any():
            bad = np.argwhere((arr < 0) | (arr >= card))[0]
            raise ValueError(f"{self.name}: decision {self.decisions[bad[1]].name!r} has index "
                             f"{arr[bad[0], bad[1]]} out of range in row {bad[0]}")
        return arr.astype(np.int64)

    # -- decode / encode -----------------------------------------------------------------
    def _make_block(self, pos: int, sub: tuple[int, ...], in_ch: int) -> Block | None:
        raise NotImplementedError

    def canonical(self, idx: Sequence[int]) -> tuple[int, ...]:
        """The canonical representative of ``idx``'s equivalence class."""
        return self.check_indices(idx)

    def to_arch(self, idx: Sequence[int]) -> Arch:
        """Decode an index vector into its (canonical) network."""
        vals = self.canonical(idx)
        blocks: list[Block] = []
        cin = self.arch_defaults.get("stem_ch", 32)
        offs = self._offsets()
        rp = self._resolution_position()
        for p, pos in enumerate(self.positions):
            if p == rp:
                continue
            b = self._make_block(p, vals[offs[p]: offs[p] + len(pos)], cin)
            if b is not None:
                blocks.append(b)
                cin = b.out_ch
        res = {} if rp is None else {"resolution": self.resolutions[vals[rp]]}
        return Arch(blocks=tuple(blocks), **self.arch_defaults, **res)

    # -- resolution as a decision ----------------------------------------------------
    @property
    def resolutions(self) -> tuple[int, ...]:
        """The input sizes of the members: the resolution decision's choices, or the fixed one."""
        if self.resolution_decision is None:
            return (int(self.arch_defaults.get("resolution", 224)),)
        return tuple(int(r) for r in self.decisions[self.resolution_decision].choices)

    def _resolution_position(self) -> int | None:
        """The position of the resolution decision (0), None without one; checks the layout."""
        rd = self.resolution_decision
        if rd is None:
            return None
        if rd != 0 or len(self.positions[0]) != 1:
            raise ValueError(f"{self.name}: the resolution decision must be the first position, "
                             f"on its own (decision {rd}, first position of "
                             f"{len(self.positions[0])} decisions)")
        return 0

    def _stub(self, resolution: int | None = None) -> Arch:
        """A one-block network with the space's settings (at ``resolution`` if given)."""
        kw = dict(self.arch_defaults)
        if resolution is not None:
            kw["resolution"] = int(resolution)
        elif self.resolution_decision is not None:
            raise ValueError(f"{self.name}: the resolution is a decision; give resolution=")
        return Arch(blocks=(Block(1, 3, 1, 1, self.arch_defaults.get("stem_ch", 32), 8),), **kw)

    def position_inputs(self, resolution: int | None = None) -> list[tuple[int, list[int]]]:
        """Per position: its input spatial size and the possible input widths.

        With a resolution decision, ``resolution`` (pixels) is required and the resolution
        position passes the stem's output on.
        """
        rp = self._resolution_position()
        if resolution is not None and rp is None:
            raise ValueError(f"{self.name}: the resolution is fixed "
                             f"({self.arch_defaults.get('resolution', 224)}), not a decision")
        stub = self._stub(resolution)
        size = stub.stem_out()
        ins: set[int] = {self.arch_defaults.get("stem_ch", 32)}
        out = []
        for p, pos in enumerate(self.positions):
            out.append((size, sorted(ins)))
            if p == rp:
                continue
            nxt: set[int] = set()
            sizes: set[int] = set()
            for sub in _product([d.n for d in pos]):
                for cin in sorted(ins):
                    b = self._make_block(p, sub, cin)
                    if b is None:
                        nxt.add(cin)
                        sizes.add(size)
                    else:
                        nxt.add(b.out_ch)
                        for lc in _layers_at(stub, b, size)[:1]:
                            sizes.add(lc.out_h)
            if len(sizes) != 1:
                raise RuntimeError(f"{self.name}: position {p} leads to several spatial sizes")
            size = sizes.pop()
            ins = nxt
        out.append((size, sorted(ins)))  # what the head sees
        return out

    def block_layers(self, pos: int, sub: tuple[int, ...], in_ch: int, size: int) -> tuple[LayerConfig, ...]:
        """All layer configurations of position ``pos`` with choices ``sub`` (empty if skipped)."""
        b = self._make_block(pos, tuple(sub), in_ch)
        if b is None:
            return ()
        a = Arch(blocks=(b,), **{**self.arch_defaults, "resolution": 8, "stem_stride": 1,
                                  "stem_ch": in_ch})
        first, *rest = _layers_at(a, b, size)
        return (first,) + tuple(rest) * (b.repeats - 1)

    # -- per-position tables -------------------------------------------------------
    def position_states(self) -> list[list[tuple]]:
        """Per position, then once more for the head: the sorted states members reach it in.

        A state is a tuple ``(spatial size, width, ...)``. By default it is ``(size, width)``
        from :meth:`position_inputs`; with a resolution decision the first position starts
        from the one state ``(0, 0)`` (before the stem) and later positions take the
        states of every resolution. Spaces whose layers depend on more (say an earlier
        depth choice) override this and :meth:`position_layers`.
        """
        if self._resolution_position() is None:
            return [[(size, w) for w in widths] for size, widths in self.position_inputs()]
        per = [self.position_inputs(resolution=r) for r in self.resolutions]
        out: list[list[tuple]] = [[(0, 0)]]
        for p in range(1, len(self.positions) + 1):
            out.append(sorted({(ins[p][0], w) for ins in per for w in ins[p][1]}))
        return out

    def position_layers(self, pos: int, sub: tuple[int, ...], state: tuple) -> tuple[tuple[LayerConfig, ...], tuple]:
        """(layers, next state): what position ``pos`` builds with choices ``sub`` from
        ``state`` (the stem, at a resolution position; identity layers included) and the
        state it hands on."""
        if pos == self._resolution_position():
            stem = self._stub(self.resolutions[sub[0]]).stem_config()
            return (stem,), (stem.out_h, stem.out_ch)
        size, cin = state[:2]
        layers = self.block_layers(pos, sub, cin, size)
        if not layers:
            return (), (size, cin)
        return layers, (layers[-1].out_h, layers[-1].out_ch)

    def stem_config(self) -> LayerConfig | None:
        """The stem every member shares; None when the resolution is a decision (the
        resolution position's layers are then the stem)."""
        if self.resolution_decision is not None:
            return None
        return self._stub().stem_config()

    def head_config(self, state: tuple) -> LayerConfig:
        """The head (conv, pool, mix conv, classifier) after the last position in ``state``."""
        size, cin = state[:2]
        d = self.arch_defaults
        return LayerConfig(op="head", h=size, w=size, in_ch=cin, out_ch=d.get("head_ch", 1280),
                           kernel=1, stride=1, expand=1, se=0.0, skip="none", groups=1,
                           act=d.get("act", "relu"), num_classes=d.get("num_classes", 1000),
                           mix_ch=d.get("mix_ch", 0), mix_norm=d.get("mix_norm", "bias"),
                           fc_bias=d.get("fc_bias", True))

    def from_arch(self, arch: Arch) -> tuple[int, ...]:
        """Canonical index vector of a network of this space (``ValueError`` if none)."""
        found = self._search_indices(arch)
        if _same_network(self.to_arch(found), arch):
            return self.canonical(found)
        raise ValueError(f"architecture is not in space {self.name!r}: {arch}")

    def _search_indices(self, arch: Arch) -> tuple[int, ...]:
        """Greedy position-by-position match of ``arch``'s blocks (override if needed)."""
        if not isinstance(arch, Arch):
            raise ValueError(f"expected an Arch, got {type(arch).__name__}")
        for k, v in self.arch_defaults.items():
            if getattr(arch, k) != v:
                raise ValueError(f"architecture is not in space {self.name!r}: {k} is "
                                 f"{getattr(arch, k)!r}, the space uses {v!r}")
        blocks = list(arch.blocks)
        cin = arch.stem_ch
        out: list[int] = []
        rp = self._resolution_position()
        for p, pos in enumerate(self.positions):
            if p == rp:
                if arch.resolution not in self.resolutions:
                    raise ValueError(f"architecture is not in space {self.name!r}: resolution "
                                     f"{arch.resolution} is not one of {list(self.resolutions)}")
                out.append(self.resolutions.index(arch.resolution))
                continue
            want = blocks[0] if blocks else None
            match = empty = None
            for sub in _product([d.n for d in pos]):
                b = self._make_block(p, sub, cin)
                if b is None:
                    if empty is None:
                        empty = sub
                elif want is not None and _same_block(b, want):
                    match = sub
                    break
            if match is not None:
                out.extend(match)
                cin = blocks.pop(0).out_ch
            elif empty is not None:
                out.extend(empty)
            else:
                raise ValueError(f"architecture is not in space {self.name!r}: stage "
                                 f"{len(arch.blocks) - len(blocks) + 1} "
                                 f"({want if want is not None else 'missing'}) has no match at "
                                 f"position {p + 1}")
        if blocks:
            raise ValueError(f"architecture is not in space {self.name!r}: "
                             f"{len(blocks)} stage(s) left over")
        return tuple(out)

    # -- sampling ------------------------------------------------------------------
    def sample_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` canonical index vectors drawn uniformly over index vectors."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        raw = np.stack([rng.integers(0, d.n, size=n) for d in self.decisions], axis=1)
        return np.array([self.canonical(r) for r in raw], dtype=np.int64).reshape(n, -1)

    def sample(self, rng: np.random.Generator) -> Arch:
        """One random (canonical) network."""
        return self.to_arch(self.sample_indices(rng, 1)[0])

    def mutate(self, idx: Sequence[int], rng: np.random.Generator, n_changes: int = 1) -> tuple[int, ...]:
        """Change ``n_changes`` decisions so that the canonical network changes."""
        vals = list(self.canonical(idx))
        base = tuple(vals)
        for _ in range(100):
            cand = list(base)
            for j in rng.choice(self.n_decisions, size=min(n_changes, self.n_decisions), replace=False):
                d = self.decisions[j]
                if d.n > 1:
                    cand[j] = int((cand[j] + rng.integers(1, d.n)) % d.n)
            out = self.canonical(cand)
            if out != base:
                return out
        raise ValueError(f"{self.name}: could not mutate {base} to a different network")

    # -- numeric encodings ----------------------------------------------------------
    def onehot(self, idx) -> np.ndarray:
        """One-hot encoding, shape ``(n, onehot_width)`` (float32)."""
        arr = self._check_batch(idx)
        offs = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]])
        out = np.zeros((arr.shape[0], self.onehot_width), dtype=np.float32)
        rows = np.repeat(np.arange(arr.shape[0]), arr.shape[1])
        out[rows, (arr + offs).ravel()] = 1.0
        return out

    def from_onehot(self, x) -> np.ndarray:
        """Inverse of :meth:`onehot` (argmax within each decision's group)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.onehot_width:
            raise ValueError(f"{self.name}: expected one-hot width {self.onehot_width}, "
                             f"got shape {x.shape}")
        out = np.empty((x.shape[0], self.n_decisions), dtype=np.int64)
        o = 0
        for j, d in enumerate(self.decisions):
            out[:, j] = x[:, o: o + d.n].argmax(axis=1)
            o += d.n
        return out

    def ordinal(self, idx) -> np.ndarray:
        """Ordinal encoding: each index scaled to [0, 1], shape ``(n, n_decisions)``."""
        arr = self._check_batch(idx)
        denom = np.maximum(self.cardinalities - 1, 1)
        return (arr / denom).astype(np.float32)

    def from_ordinal(self, x) -> np.ndarray:
        """Inverse of :meth:`ordinal` (rounds to the nearest choice)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_decisions:
            raise ValueError(f"{self.name}: expected {self.n_decisions} ordinal columns, got {x.shape}")
        denom = np.maximum(self.cardinalities - 1, 1)
        return np.clip(np.rint(x * denom), 0, self.cardinalities - 1).astype(np.int64)

    # -- operator configurations ---------------------------------------------------
    def operator_configs(self) -> list[LayerConfig]:
        """Every distinct operator configuration of the space: stem, layers, heads.

        Identity layers (which compute nothing) are left out. Sorted by key.
        """
        seen: dict[str, LayerConfig] = {}
        rp = self._resolution_position()
        for r in ([None] if rp is None else self.resolutions):
            stem = self._stub(r).stem_config()
            seen[stem.key()] = stem
            ins = self.position_inputs(r)
            for p, pos in enumerate(self.positions):
                if p == rp:
                    continue
                size, widths = ins[p]
                for sub in _product([d.n for d in pos]):
                    for cin in widths:
                        for lc in self.block_layers(p, sub, cin, size)[:2]:  # first + one repeat
                            if not lc.is_identity:
                                seen.setdefault(lc.key(), lc)
            size, finals = ins[-1]
            for cin in finals:
                lc = self.head_config((size, cin))
                seen[lc.key()] = lc
        return [seen[k] for k in sorted(seen)]

    def enumerate(self, limit: int = 1_000_000) -> Iterable[tuple[int, ...]]:
        """All canonical index vectors, for spaces small enough (``ValueError`` otherwise)."""
        if self.size > limit:
            raise ValueError(f"{self.name} has {self.size:.3g} index vectors; enumerate() stops at {limit}")
        seen = set()
        for v in _product([d.n for d in self.decisions]):
            c = self.canonical(v)
            if c not in seen:
                seen.add(c)
                yield c

    def info(self) -> dict:
        """A JSON-friendly summary of the space."""
        return {"name": self.name, "description": self.description,
                "n_decisions": self.n_decisions, "size": self.size,
                "decisions": [{"name": d.name, "choices": [_jsonable(c) for c in d.choices]}
                              for d in self.decisions],
                "arch_defaults": dict(self.arch_defaults)}


def _jsonable(v):
    return v if isinstance(v, (int, float, str)) or v is None else str(v)


def _product(cards: list[int]):
    """Index tuples over ``cards`` in lexicographic order."""
    if not cards:
        yield ()
        return
    import itertools

    yield from itertools.product(*[range(c) for c in cards])


def _layers_at(a: Arch, b: Block, size: int) -> list[LayerConfig]:
    out = []
    cin = b.in_ch
    for r in range(b.repeats if b.repeats < 2 else 2):  # repeats 2..n share one config
        stride = b.stride if r == 0 else 1
        lc = LayerConfig(op=b.op, h=size, w=size, in_ch=cin, out_ch=b.out_ch, kernel=b.kernel,
                         stride=stride, expand=b.expand, se=b.se, skip=b.skip, groups=b.groups,
                         act=a.act, expand_divisor=a.expand_divisor)
        out.append(lc)
        size = lc.out_h
        cin = b.out_ch
    return out


def _same_block(x: Block, y: Block) -> bool:
    """Blocks that build the same layers (the skip choice may differ where it is moot)."""
    if x == y:
        return True
    if x.replace(skip=y.skip) != y:
        return False
    return _residuals(x) == _residuals(y)


def _residuals(b: Block) -> tuple[str, ...]:
    out = []
    for r in range(b.repeats):
        lc = LayerConfig(op=b.op, h=8, w=8, in_ch=b.in_ch if r == 0 else b.out_ch, out_ch=b.out_ch,
                         kernel=b.kernel, stride=b.stride if r == 0 else 1, expand=b.expand,
                         se=b.se, skip=b.skip, groups=b.groups, act="relu")
        out.append(lc.residual)
    return tuple(out)


def _same_network(x: Arch, y: Arch) -> bool:
    return (x.replace(blocks=y.blocks) == y and len(x.blocks) == len(y.blocks)
            and all(_same_block(a, b) for a, b in zip(x.blocks, y.blocks)))
