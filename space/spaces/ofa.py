"""Once-for-All's MobileNetV3 supernet (``OFAMobileNetV3``) as a search space.

Every choice below is read from mit-han-lab/once-for-all (commit ids as stored by the
code index):

* ``ofa/imagenet_classification/elastic_nn/networks/ofa_mbv3.py`` (80a2e26e):
  ``base_stage_width = [16, 16, 24, 40, 80, 112, 160, 960, 1280]``, every width
  ``make_divisible(w * width_mult, 8)``; ``stride_stages = [1, 2, 2, 2, 1, 2]``,
  ``act_stages = [relu, relu, relu, h_swish, h_swish, h_swish]``,
  ``se_stages = [F, F, T, F, T, T]``, ``n_block_list = [1] + [max(depth_list)] * 5``.
  Stem ``ConvLayer(3, w0, 3, stride 2, h_swish)``; a fixed first block
  ``MBConvLayer(w0 -> w1, k3, s1, e1, relu, no SE)`` with an identity shortcut when
  ``w0 == w1``; then 5 stages of ``DynamicMBConvLayer`` (stride on the first layer,
  identity shortcut where stride 1 and in == out); head: ``final_expand_layer``
  1x1 conv + BN + h_swish to ``make_divisible(960 * wm, 8)``, global pool,
  ``feature_mix_layer`` 1x1 conv without bias or BN + h_swish to
  ``make_divisible(1280 * wm, 8)``, classifier. A stage of depth ``d`` runs its first
  ``d`` layers (``runtime_depth``, ``active_idx = block_idx[:depth]``).
* ``ofa/model_zoo.py`` (27b50bd1): the shipped supernets ``ofa_mbv3_d234_e346_k357_w1.0``
  and ``..._w1.2`` (ks [3, 5, 7], expand [3, 4, 6], depth [2, 3, 4]); both are
  registered here (``ofa-mbv3``, ``ofa-mbv3-w1.2``).
* ``ofa/imagenet_classification/elastic_nn/modules/dynamic_layers.py``:
  ``active_middle_channel = make_divisible(round(in * e), 8)``;
  ``ofa/utils/layers.py`` (80a2e26e) ``MBConvLayer``: 1x1 expand (absent at e1) + BN
  + act, depthwise kxk + BN + act, SE on the expanded width, 1x1 project + BN;
  ``ofa/utils/pytorch_modules.py`` (80a2e26e) ``SEModule``: ``REDUCTION = 4``, squeeze
  ``make_divisible(mid // 4, 8)``, biased 1x1 convs, ReLU inside, ``Hsigmoid`` gate
  (our ``se0.25_sem_sed8_sehs_serelu``).
* Resolution: ``train_ofa_net.py`` trains with ``image_size = '128,160,192,224'`` and
  ``continuous_size = True``, and ``ofa/utils/my_dataloader/my_random_resize_crop.py``
  then draws every size from 128 to 224 divisible by ``IMAGE_SIZE_SEG = 4``: 25 sizes.
* ``ofa/nas/accuracy_predictor/arch_encoder.py`` (80a2e26e) ``MobileNetArchEncoder``
  (mbv3): ``n_stage = 5``, ``max_n_blocks = 5 * 4``; a layer ``i`` (stage ``i // 4``,
  position ``i % 4``) counts only when ``i % 4 < d[stage]``. Our index vector is that
  encoding: resolution, then per stage its depth and the (kernel, expansion) of its 4
  layers; layers beyond the depth are canonicalised to the first choices (k3, e3).

The Arch objects are those of :func:`space.reference_ofa.ofa_arch_from_config` (network
activation h-swish, ``mix_norm='none'``), so the OFA specialized subnets of the
supernets (``ofa_specialized.json``, ``net`` MobileNetV3, stem 16 = w1.0, stem 24 =
w1.2) are members when their resolution is one of the 25 training sizes; four
w1.2 subnets were fine-tuned and published at 228, 236, 240 and 260 and are members only
of a space built with those resolutions (``OFAMobileNetV3Space(resolutions=...)``).

The resolution is a decision (:attr:`~space.spaces.base.SearchSpace.resolution_decision`,
the first position, whose layers are the stem and the fixed first block at that size).
Positions, for per-position tables (``CompiledSpace``): the resolution, then per stage its
depth and its 4 layer slots (kernel, expansion), the decisions in the same order as the
index vector. A state is ``(spatial size, width, depth of the current stage)``, so a slot
beyond its stage's depth builds nothing. :meth:`OFAMobileNetV3Space.operator_configs` lists
every operator (stem, layers, head) of every member at every resolution for op tables.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping, Sequence

from ..arch import Arch, Block, LayerConfig, expand_for, make_divisible
from .base import Decision, SearchSpace, _product

BASE_STAGE_WIDTH = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STRIDES = (1, 2, 2, 2, 1, 2)             # first block, then the 5 stages
ACTS = ("relu", "relu", "relu", "hswish", "hswish", "hswish")   # OFA "h_swish" = hswish
SE_STAGES = (False, False, True, False, True, True)
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)
N_STAGES, MAX_DEPTH = 5, 4
RESOLUTIONS = tuple(r for r in range(128, 225) if r % 4 == 0)  # 128..224 step 4
WIDTH_MULTS = (1.0, 1.2)
#: MobileNetV3's SE as OFA builds it (SEModule: mid // 4 rounded to 8, ReLU, h-sigmoid)
OFA_SE = dict(se=0.25, se_base="mid", se_div=8, se_gate="hsigmoid", se_act="relu")


def ofa_layer(cin: int, cout: int, kernel: int, expand: int, stride: int, act: str,
              se: bool) -> Block:
    """One OFA MBConv layer as a one-layer :class:`Block` (``ofa_arch_from_config``'s form)."""
    kw: dict = dict(repeats=1, kernel=kernel, stride=stride, in_ch=cin, out_ch=cout, act=act)
    if se:
        kw.update(OFA_SE)
    mid = make_divisible(round(cin * expand), 8) if expand != 1 else cin
    if mid == cin * expand:
        return Block(expand=expand, **kw)
    return Block(expand=expand_for(mid, cin), mid_ch=mid, **kw)


class OFAMobileNetV3Space(SearchSpace):
    """OFA-MobileNetV3: resolution, then per stage depth {2,3,4} and 4 x (kernel, expansion)."""

    resolution_decision = 0

    def __init__(self, width_mult: float = 1.0, resolutions: Sequence[int] = RESOLUTIONS,
                 name: str | None = None):
        if width_mult not in WIDTH_MULTS:
            raise ValueError(f"OFA ships MobileNetV3 supernets with width_mult "
                             f"{', '.join(map(str, WIDTH_MULTS))}; got {width_mult!r}")
        res = tuple(int(r) for r in resolutions)
        if not res or len(set(res)) != len(res) or any(r < 32 for r in res):
            raise ValueError(f"resolutions must be distinct sizes >= 32, got {list(resolutions)}")
        self.width_mult = float(width_mult)
        self.name = name or ("ofa-mbv3" if width_mult == 1.0 else f"ofa-mbv3-w{width_mult:g}")
        self.description = (f"Once-for-All MobileNetV3 supernet w{width_mult:.1f} "
                            f"(resolution; per stage depth 2-4; per layer kernel 3/5/7, "
                            f"expansion 3/4/6)")
        w = [make_divisible(c * width_mult, 8) for c in BASE_STAGE_WIDTH]
        self.stem_ch, self.first_ch = w[0], w[1]
        self.stage_widths = tuple(w[2:7])
        self.arch_defaults = {"stem_ch": w[0], "head_ch": w[7], "mix_ch": w[8],
                              "mix_norm": "none", "num_classes": 1000, "act": "hswish"}
        pos: list[tuple[Decision, ...]] = [(Decision("resolution", res),)]
        for s in range(1, N_STAGES + 1):  # the depth, then one position per layer slot
            pos.append((Decision(f"s{s}_depth", DEPTHS),))
            for j in range(1, MAX_DEPTH + 1):
                pos.append((Decision(f"s{s}_l{j}_kernel", KERNELS),
                            Decision(f"s{s}_l{j}_expand", EXPANDS)))
        self.positions = tuple(pos)
        self._layer_memo: dict = {}

    # -- index vectors <-> Arch -------------------------------------------------------
    @staticmethod
    def _stage_offset(s: int) -> int:
        """Index of stage ``s``'s (0-based) depth decision."""
        return 1 + s * (1 + 2 * MAX_DEPTH)

    def canonical(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Layers beyond a stage's depth take the first kernel and expansion (k3, e3)."""
        vals = list(self.check_indices(idx))
        for s in range(N_STAGES):
            o = self._stage_offset(s)
            d = DEPTHS[vals[o]]
            vals[o + 1 + 2 * d: o + 1 + 2 * MAX_DEPTH] = [0] * (2 * (MAX_DEPTH - d))
        return tuple(vals)

    def _first_block(self) -> Block:
        return Block(repeats=1, kernel=3, stride=STRIDES[0], expand=1, in_ch=self.stem_ch,
                     out_ch=self.first_ch, act=ACTS[0])

    def to_arch(self, idx: Sequence[int]) -> Arch:
        """Decode an index vector into its (canonical) network."""
        vals = self.canonical(idx)
        blocks = [self._first_block()]
        cin = self.first_ch
        for s in range(N_STAGES):
            o = self._stage_offset(s)
            for j in range(DEPTHS[vals[o]]):
                k, e = KERNELS[vals[o + 1 + 2 * j]], EXPANDS[vals[o + 2 + 2 * j]]
                cout = self.stage_widths[s]
                blocks.append(ofa_layer(cin, cout, k, e, STRIDES[s + 1] if j == 0 else 1,
                                        ACTS[s + 1], SE_STAGES[s + 1]))
                cin = cout
        return Arch(blocks=tuple(blocks), resolution=self.resolutions[vals[0]],
                    **self.arch_defaults)

    def from_arch(self, arch: Arch) -> tuple[int, ...]:
        """Canonical index vector of a member network (``ValueError`` says why not)."""
        if not isinstance(arch, Arch):
            raise ValueError(f"expected an Arch, got {type(arch).__name__}")
        bad = f"architecture is not in space {self.name!r}"
        if arch.resolution not in self.resolutions:
            raise ValueError(f"{bad}: resolution {arch.resolution} is not one of "
                             f"{_ranges(self.resolutions)}")
        layers = arch.layers()
        vals = [self.resolutions.index(arch.resolution)]
        pos = 1
        for s, width in enumerate(self.stage_widths):
            stage = []
            while pos < len(layers) and layers[pos].out_ch == width:
                stage.append(layers[pos])
                pos += 1
            if len(stage) not in DEPTHS:
                raise ValueError(f"{bad}: stage {s + 1} (width {width}) has {len(stage)} "
                                 f"layers; the supernet allows {', '.join(map(str, DEPTHS))}")
            vals.append(DEPTHS.index(len(stage)))
            for j, lc in enumerate(stage):
                e = next((e for e in EXPANDS
                          if make_divisible(round(lc.in_ch * e), 8) == lc.mid_ch), None)
                if lc.kernel not in KERNELS or e is None:
                    raise ValueError(f"{bad}: stage {s + 1} layer {j + 1} has kernel "
                                     f"{lc.kernel} and expanded width {lc.mid_ch} (in "
                                     f"{lc.in_ch}); the supernet has kernels {KERNELS} and "
                                     f"expansions {EXPANDS}")
                vals += [KERNELS.index(lc.kernel), EXPANDS.index(e)]
            vals += [0, 0] * (MAX_DEPTH - len(stage))
        if pos != len(layers):
            raise ValueError(f"{bad}: {len(layers) - pos} layer(s) after stage {N_STAGES} "
                             f"(or a stage width other than {self.stage_widths})")
        out = self.canonical(vals)
        why = _difference(self.to_arch(out), arch)
        if why:
            raise ValueError(f"{bad}: {why}")
        return out

    # -- OFA's own sub-network dictionaries ----------------------------------------------------
    def to_ofa_config(self, idx: Sequence[int]) -> dict:
        """OFA's sub-network dict: ``ks``/``e`` (20 layers), ``d`` (5 stages), ``image_size``.

        As ``OFAMobileNetV3.set_active_subnet`` takes it; layers beyond a stage's depth
        hold the canonical (3, 3).
        """
        vals = self.canonical(idx)
        ks, e, d = [], [], []
        for s in range(N_STAGES):
            o = self._stage_offset(s)
            d.append(DEPTHS[vals[o]])
            for j in range(MAX_DEPTH):
                ks.append(KERNELS[vals[o + 1 + 2 * j]])
                e.append(EXPANDS[vals[o + 2 + 2 * j]])
        return {"ks": ks, "e": e, "d": d, "image_size": self.resolutions[vals[0]]}

    def from_ofa_config(self, cfg: Mapping) -> tuple[int, ...]:
        """Canonical index vector of an OFA sub-network dict (``r`` may replace ``image_size``)."""
        try:
            ks, e, d = list(cfg["ks"]), list(cfg["e"]), list(cfg["d"])
            r = cfg["image_size"] if "image_size" in cfg else cfg["r"]
            r = int(r[0] if isinstance(r, (list, tuple)) else r)
        except (KeyError, TypeError, ValueError, IndexError):
            raise ValueError(f"{self.name}: an OFA sub-network dict needs ks, e, d and "
                             f"image_size (or r); got {dict(cfg)!r}") from None
        n = N_STAGES * MAX_DEPTH
        if len(ks) != n or len(e) != n or len(d) != N_STAGES:
            raise ValueError(f"{self.name}: expected {n} ks, {n} e and {N_STAGES} d; got "
                             f"{len(ks)}, {len(e)}, {len(d)}")
        for what, vals, allowed in (("d", d, DEPTHS), ("image_size", [r], self.resolutions)):
            for v in vals:
                if v not in allowed:
                    raise ValueError(f"{self.name}: {what} {v} is not one of {_ranges(allowed)}")
        out = [self.resolutions.index(r)]
        for s in range(N_STAGES):
            out.append(DEPTHS.index(d[s]))
            for j in range(MAX_DEPTH):
                i = s * MAX_DEPTH + j
                active = j < d[s]
                for what, v, allowed in (("ks", ks[i], KERNELS), ("e", e[i], EXPANDS)):
                    if v not in allowed and active:
                        raise ValueError(f"{self.name}: {what}[{i}] {v} is not one of {allowed}")
                    out.append(allowed.index(v) if v in allowed else 0)
        return self.canonical(out)

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def n_networks(self) -> int:
        """Number of distinct networks (canonical index vectors): 25 x (9^2 + 9^3 + 9^4)^5."""
        per_stage = sum((len(KERNELS) * len(EXPANDS)) ** d for d in DEPTHS)
        return len(self.resolutions) * per_stage ** N_STAGES

    def count(self, idx: Sequence[int]):
        """Exact params/MAdds (:func:`space.counting.count`) of a member."""
        from ..counting import count

        return count(self.to_arch(idx))

    def info(self) -> dict:
        """The base summary plus the number of distinct networks."""
        return {**super().info(), "n_networks": self.n_networks,
                "resolutions": list(self.resolutions), "width_mult": self.width_mult}

    # -- operators ------------------------------------------------------------------------------
    def operator_configs(self, resolutions: Sequence[int] | None = None) -> list[LayerConfig]:
        """Every operator (stem, layers, head) of every member at every resolution, by key.

        A layer's configuration depends only on the resolution, its stage, whether it is
        the stage's first layer, and its (kernel, expansion): the input width of every
        stage is fixed. So the networks of depth 2 everywhere with one (kernel,
        expansion) in all layers, at each resolution, hold every operator.
        """
        res = self.resolutions if resolutions is None else tuple(resolutions)
        for r in res:
            if r not in self.resolutions:
                raise ValueError(f"{self.name}: resolution {r} is not one of "
                                 f"{_ranges(self.resolutions)}")
        seen: dict[str, LayerConfig] = {}
        for r in res:
            for ki, ei in itertools.product(range(len(KERNELS)), range(len(EXPANDS))):
                vals = [self.resolutions.index(r)]
                for _ in range(N_STAGES):
                    vals += [DEPTHS.index(2)] + [ki, ei] * MAX_DEPTH
                for lc in self.to_arch(vals).ops():
                    if not lc.is_identity:
                        seen.setdefault(lc.key(), lc)
        return [seen[k] for k in sorted(seen)]

    # -- per-position tables --------------------------------------------------------------------
    def position_states(self) -> list[list[tuple]]:
        """Per position (then the head): the sorted states ``(size, width, depth)`` members
        reach it in; ``depth`` is the current stage's (0 outside a stage)."""
        memo = self.__dict__.get("_states_memo")
        if memo is None:
            memo = [[(0, 0, 0)]]
            for p, pos in enumerate(self.positions):
                subs = list(_product([d.n for d in pos]))
                memo.append(sorted({self.position_layers(p, sub, st)[1]
                                    for st in memo[-1] for sub in subs}))
            self.__dict__["_states_memo"] = memo
        return [list(s) for s in memo]

    def position_layers(self, pos: int, sub: tuple[int, ...], state: tuple) -> tuple[tuple[LayerConfig, ...], tuple]:
        """(layers, next state) of position ``pos``: the resolution's stem and first block, a
        stage's depth (no layers), or a layer slot (its layer where the depth reaches it)."""
        if pos == 0:
            stem, first = self._entry_layers(self.resolutions[sub[0]])
            return (stem, first), (first.out_h, first.out_ch, 0)
        s, slot = divmod(pos - 1, 1 + MAX_DEPTH)
        size, cin, depth = state
        if slot == 0:
            return (), (size, cin, DEPTHS[sub[0]])
        j = slot - 1
        depth_after = 0 if j == MAX_DEPTH - 1 else depth
        if j >= depth:
            return (), (size, cin, depth_after)
        lc = self._slot_layer(s, j, size, cin, KERNELS[sub[0]], EXPANDS[sub[1]])
        return (lc,), (lc.out_h, lc.out_ch, depth_after)

    def _entry_layers(self, resolution: int) -> tuple[LayerConfig, LayerConfig]:
        """The stem and the fixed first block's layer at ``resolution``, as members have them."""
        key = ("entry", resolution)
        if key not in self._layer_memo:
            a = self.to_arch([self.resolutions.index(resolution)] + [0] * (self.n_decisions - 1))
            self._layer_memo[key] = (a.stem_config(), a.layers()[0])
        return self._layer_memo[key]

    def _slot_layer(self, s: int, j: int, size: int, cin: int, k: int, e: int) -> LayerConfig:
        """Layer ``j`` of stage ``s`` (0-based) with kernel ``k``, expansion ``e`` on a
        ``size`` x ``size`` input of ``cin`` channels (built as :meth:`to_arch` builds it)."""
        key = (s, j, size, cin, k, e)
        if key not in self._layer_memo:
            b = ofa_layer(cin, self.stage_widths[s], k, e, STRIDES[s + 1] if j == 0 else 1,
                          ACTS[s + 1], SE_STAGES[s + 1])
            stub = Arch(blocks=(b,), **{**self.arch_defaults, "resolution": 64,
                                        "stem_stride": 1, "stem_ch": cin})
            self._layer_memo[key] = dataclasses.replace(stub.layers()[0], h=size, w=size)
        return self._layer_memo[key]

    def position_inputs(self, resolution=None):
        raise ValueError(f"{self.name}: a layer's input depends on its stage's depth; the "
                         f"per-position tables use position_states() and position_layers()")

    def block_layers(self, pos, sub, in_ch, size):
        raise ValueError(f"{self.name}: a position is a depth or one layer slot; use "
                         f"position_layers() or to_arch(idx).stage_layers()")


def _ranges(vals: Sequence[int]) -> str:
    v = list(vals)
    if len(v) > 2 and all(b - a == v[1] - v[0] for a, b in zip(v, v[1:])):
        return f"{v[0]}..{v[-1]} step {v[1] - v[0]}"
    return ", ".join(map(str, v))


def _difference(x: Arch, y: Arch) -> str:
    """What makes ``y`` compute something else than the member ``x`` ('' if nothing)."""
    for f in dataclasses.fields(Arch):
        if f.name not in ("blocks", "name") and getattr(x, f.name) != getattr(y, f.name):
            return f"{f.name} is {getattr(y, f.name)!r}, the supernet's is {getattr(x, f.name)!r}"
    lx, ly = x.layers(), y.layers()
    for i, (a, b) in enumerate(zip(lx, ly)):
        if a.key() != b.key():
            return f"layer {i + 1} is {b.key()}, the supernet's is {a.key()}"
    if len(lx) != len(ly):
        return f"{len(ly)} layers, the supernet's member has {len(lx)}"
    return ""


def ofa_mbv3_space() -> OFAMobileNetV3Space:
    """``ofa-mbv3``: the w1.0 supernet at its 25 training resolutions."""
    return OFAMobileNetV3Space(1.0)


def ofa_mbv3_w12_space() -> OFAMobileNetV3Space:
    """``ofa-mbv3-w1.2``: the w1.2 supernet (the one OFA's tutorial predictor scores)."""
    return OFAMobileNetV3Space(1.2)


__all__ = ["ACTS", "BASE_STAGE_WIDTH", "DEPTHS", "EXPANDS", "KERNELS", "OFAMobileNetV3Space",
           "RESOLUTIONS", "SE_STAGES", "STRIDES", "ofa_layer", "ofa_mbv3_space",
           "ofa_mbv3_w12_space"]
