"""Published mobile networks beyond MnasNet: MobileNetV3, pytorchcv's builds, ProxylessNAS,
SPNASNet, FBNet-C, EfficientNet-EdgeTPU.

Each builder follows one release's code, read from the source named beside it, and
returns an :class:`~space.arch.Arch`; :data:`MOBILE_SOURCES` names the source of every
registered network and :data:`MOBILE_ALIASES` maps the ``pytorchcv`` model names of the
mobile-ml-benchmark CSV to registry names. :mod:`space.reference` merges them into
``REFERENCE``. The counts these give against the published figures are checked in
``tests/test_reference_mobile.py``.

Release conventions worth knowing (all read from the code, not guessed):

* TF-slim MobileNetV3 (tensorflow/models research/slim/nets/mobilenet/mobilenet_v3.py):
  expanded width ``make_divisible(in * ef, 8)`` of the *scaled* input; SE squeezes the
  expanded width to ``make_divisible(mid / 4, 8)``, ReLU inside, hard-sigmoid gate;
  the depth multiplier scales every conv (head and mix conv included; the default
  ``finegrain_classification_mode=False``) with ``make_divisible(c * m, 8)``; the mix
  conv has a bias and no BN; 1001 classes.
* pytorchcv (osmr/imgclsmob, pytorch/pytorchcv/models/*.py, pip ``pytorchcv``):
  MobileNetV2 scales widths by ``int(c * m)`` (rule ``trunc``), keeps a 1x1 conv
  32->32 in the first unit (``mobilenetv2_*``; ``mobilenetv2b_*`` drops it) and a
  bias-free classifier; MobileNetV3 scales widths and ``exp_channels`` with
  ``round_channels`` (= ``make_divisible(., 8)``), has a bias-free, BN-free mix conv
  and a biased classifier; EfficientNet-EdgeTPU puts the stride of its fused units
  on the 1x1 projection (``fusedp``) and its first unit expands the *output* width.
* ProxylessNAS (pytorchcv ``proxylessnas.py``, = mit-han-lab/proxylessnas): units with
  ``residual=0`` are zero ops (identity only) and are left out here.
"""
from __future__ import annotations

import math

from .arch import Arch, Block, expand_for, make_divisible

__all__ = ["MOBILE_ALIASES", "MOBILE_SOURCES", "mobile_registry", "mobile_width_fns"]

TFSLIM_V3 = ("https://github.com/tensorflow/models/blob/master/research/slim/nets/mobilenet/"
             "mobilenet_v3.py (MobileNetV3, Howard et al. ICCV'19, arXiv 1905.02244)")
PCV = "https://github.com/osmr/imgclsmob/blob/master/pytorch/pytorchcv/models/{}.py"


def _block(cin: int, cout: int, k: int, s: int, mid: int | None = None, *, op: str = "mbconv",
           se: bool = False, act: str = "", skip: str = "identity", expand: int | None = None,
           v3se: bool = True) -> Block:
    """One layer (``r1``) with an explicit expanded width when it is not ``in * e``."""
    kw: dict = dict(repeats=1, kernel=k, stride=s, in_ch=cin, out_ch=cout, op=op, act=act,
                    skip=skip)
    if se:
        kw.update(se=0.25, se_base="mid", se_div=8, se_gate="hsigmoid", se_act="relu") if v3se \
            else kw.update(se=0.25)
    if expand is not None and (mid is None or mid == cin * expand):
        return Block(expand=expand, **kw)
    if mid is None or mid == cin:
        return Block(expand=1, **kw)
    e = mid // cin if mid % cin == 0 and mid // cin <= 12 else 0
    if e:
        return Block(expand=e, **kw)
    return Block(expand=expand_for(mid, cin), mid_ch=mid, **kw)


def _arch(blocks: list[Block], **kw) -> Arch:
    return Arch(blocks=tuple(blocks), **kw)


# -- MobileNetV3, TF-slim --------------------------------------------------------------
# (ef, out, kernel, stride, act, se) per layer, from V3_LARGE / V3_SMALL / *_MINIMALISTIC
_V3_LARGE = [(1, 16, 3, 1, "relu", 0), (4, 24, 3, 2, "relu", 0), (3, 24, 3, 1, "relu", 0),
             (3, 40, 5, 2, "relu", 1), (3, 40, 5, 1, "relu", 1), (3, 40, 5, 1, "relu", 1),
             (6, 80, 3, 2, "hswish", 0), (2.5, 80, 3, 1, "hswish", 0),
             (184 / 80., 80, 3, 1, "hswish", 0), (184 / 80., 80, 3, 1, "hswish", 0),
             (6, 112, 3, 1, "hswish", 1), (6, 112, 3, 1, "hswish", 1),
             (6, 160, 5, 2, "hswish", 1), (6, 160, 5, 1, "hswish", 1), (6, 160, 5, 1, "hswish", 1)]
_V3_SMALL = [(1, 16, 3, 2, "relu", 1), (72. / 16, 24, 3, 2, "relu", 0), (88. / 24, 24, 3, 1, "relu", 0),
             (4, 40, 5, 2, "hswish", 1), (6, 40, 5, 1, "hswish", 1), (6, 40, 5, 1, "hswish", 1),
             (3, 48, 5, 1, "hswish", 1), (3, 48, 5, 1, "hswish", 1), (6, 96, 5, 2, "hswish", 1),
             (6, 96, 5, 1, "hswish", 1), (6, 96, 5, 1, "hswish", 1)]


def mobilenetv3_tfslim(version: str, multiplier: float = 1.0, minimalistic: bool = False,
                       finegrain: bool | None = None) -> Arch:
    """TF-slim MobileNetV3 ``large``/``small`` at a depth multiplier (minimalistic: no SE,
    no h-swish, 3x3 kernels only).

    ``finegrain`` (``finegrain_classification_mode``) keeps the mix conv at full width;
    by default on below 1.0: the published 0.75 figures (Large 4.0M / 155M, Small 2.0M
    in the paper) are matched only so (without it: 3.44M / 154.0M and 1.68M).
    """
    if finegrain is None:
        finegrain = multiplier < 1.0
    spec = _V3_LARGE if version == "large" else _V3_SMALL
    head, mix = (960, 1280) if version == "large" else (576, 1024)

    def d(c: float) -> int:
        return make_divisible(c * multiplier, 8)

    stem = d(16)
    blocks, cin = [], stem
    for ef, n, k, s, act, se in spec:
        cout = d(n)
        mid = make_divisible(cin * ef, 8)
        if minimalistic:
            k, act, se = 3, "relu", 0
        blocks.append(_block(cin, cout, k, s, mid, se=bool(se), act=act))
        cin = cout
    act = "relu" if minimalistic else "hswish"
    return _arch(blocks, stem_ch=stem, head_ch=d(head), mix_ch=mix if finegrain else d(mix),
                 num_classes=1001, act=act)


# -- MobileNetV3, pytorchcv ------------------------------------------------------------
_PCV_V3 = {
    "small": dict(channels=[[16], [24, 24], [40, 40, 40, 48, 48], [96, 96, 96]],
                  exp=[[16], [72, 88], [96, 240, 240, 120, 144], [288, 576, 576]],
                  k3=[[1], [1, 1], [0, 0, 0, 0, 0], [0, 0, 0]],
                  relu=[[1], [1, 1], [0, 0, 0, 0, 0], [0, 0, 0]],
                  se=[[1], [0, 0], [1, 1, 1, 1, 1], [1, 1, 1]], first_stride=True, final=576),
    "large": dict(channels=[[16], [24, 24], [40, 40, 40], [80, 80, 80, 80, 112, 112], [160, 160, 160]],
                  exp=[[16], [64, 72], [72, 120, 120], [240, 200, 184, 184, 480, 672], [672, 960, 960]],
                  k3=[[1], [1, 1], [0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0]],
                  relu=[[1], [1, 1], [1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0]],
                  se=[[0], [0, 0], [1, 1, 1], [0, 0, 0, 0, 1, 1], [1, 1, 1]], first_stride=False,
                  final=960),
}


def mobilenetv3_pytorchcv(version: str, width: float = 1.0) -> Arch:
    """pytorchcv ``get_mobilenetv3`` (``mobilenetv3_{small,large}_w*``)."""
    cfg = _PCV_V3[version]

    def r(c: int) -> int:
        return make_divisible(c * width, 8) if width != 1.0 else c

    stem = r(16)
    final = r(cfg["final"]) if width > 1.0 else cfg["final"]
    blocks, cin = [], stem
    for i, outs in enumerate(cfg["channels"]):
        for j, n in enumerate(outs):
            cout, mid = r(n), r(cfg["exp"][i][j])
            s = 2 if j == 0 and (i != 0 or cfg["first_stride"]) else 1
            # pytorchcv: the expansion conv exists when exp != out; ours when mid != in
            if (mid != cout) != (mid != cin):
                raise AssertionError(f"pytorchcv unit {i}.{j} has no representation here")
            blocks.append(_block(cin, cout, 3 if cfg["k3"][i][j] else 5, s, mid,
                                 se=bool(cfg["se"][i][j]), act="relu" if cfg["relu"][i][j] else "hswish"))
            cin = cout
    return _arch(blocks, stem_ch=stem, head_ch=final, mix_ch=1280, mix_norm="none", act="hswish")


# -- MobileNetV2, pytorchcv --------------------------------------------------------------
def mobilenetv2_pytorchcv(width: float = 1.0, remove_exp_conv: bool = False) -> Arch:
    """pytorchcv ``get_mobilenetv2`` (``mobilenetv2_w*``; ``mobilenetv2b_w*`` with
    ``remove_exp_conv``): widths ``int(c * m)``, no classifier bias."""
    layers, down = [1, 2, 3, 4, 3, 3, 1], [0, 1, 1, 1, 0, 1, 0]
    chans = [16, 24, 32, 64, 96, 160, 320]

    def r(c: int) -> int:
        return int(c * width) if width != 1.0 else c

    stem = r(32)
    head = int(1280 * width) if width > 1.0 else 1280
    blocks, cin = [], stem
    for i, (n, reps, dn) in enumerate(zip(chans, layers, down)):
        for j in range(reps):
            cout = r(n)
            s = 2 if j == 0 and dn else 1
            if i == 0:
                blocks.append(_block(cin, cout, 3, s, expand=1, op="mbconv" if remove_exp_conv else "irf"))
            else:
                blocks.append(_block(cin, cout, 3, s, expand=6))
            cin = cout
    return _arch(_merge(blocks), stem_ch=stem, head_ch=head, act="relu6", fc_bias=False)


def _merge(blocks: list[Block]) -> list[Block]:
    """Fold runs of identical stride-1 ``in == out`` layers into ``r<n>`` stages."""
    out: list[Block] = []
    for b in blocks:
        prev = out[-1] if out else None
        if prev is not None and b.stride == 1 and b.in_ch == b.out_ch == prev.out_ch and \
                b.replace(in_ch=prev.in_ch, stride=prev.stride, repeats=prev.repeats) == prev and \
                b.mid_ch == 0:
            out[-1] = prev.replace(repeats=prev.repeats + 1)
        else:
            out.append(b)
    return out


# -- ProxylessNAS (pytorchcv proxylessnas.py) -------------------------------------------
_PROXYLESS = {
    "cpu": dict(res=[[1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
                ch=[[24], [32] * 4, [48] * 4, [88] * 4 + [104] * 4, [216] * 4 + [360]],
                k=[[3], [3, 3, 3, 3], [3, 3, 3, 5], [3, 3, 3, 3, 5, 3, 3, 3], [5, 5, 5, 3, 5]],
                e=[[1], [6, 3, 3, 3], [6, 3, 3, 3], [6, 3, 3, 3, 6, 3, 3, 3], [6, 3, 3, 3, 6]],
                stem=40, head=1432),
    "gpu": dict(res=[[1], [1, 0, 0, 0], [1, 0, 0, 1], [1, 0, 0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1]],
                ch=[[24], [32] * 4, [56] * 4, [112] * 4 + [128] * 4, [256] * 4 + [432]],
                k=[[3], [5, 3, 3, 3], [7, 3, 3, 3], [7, 5, 5, 5, 5, 3, 3, 5], [7, 7, 7, 5, 7]],
                e=[[1], [3, 3, 3, 3], [3, 3, 3, 3], [6, 3, 3, 3, 6, 3, 3, 3], [6, 6, 6, 6, 6]],
                stem=40, head=1728),
    "mobile": dict(res=[[1], [1, 1, 0, 0], [1, 1, 1, 1], [1] * 8, [1] * 5],
                   ch=[[16], [32] * 4, [40] * 4, [80] * 4 + [96] * 4, [192] * 4 + [320]],
                   k=[[3], [5, 3, 3, 3], [7, 3, 5, 5], [7, 5, 5, 5, 5, 5, 5, 5], [7, 7, 7, 7, 7]],
                   e=[[1], [3, 3, 3, 3], [3, 3, 3, 3], [6, 3, 3, 3, 6, 3, 3, 3], [6, 6, 3, 3, 6]],
                   stem=32, head=1280),
    "mobile14": dict(res=[[1], [1, 1, 0, 0], [1, 1, 1, 1], [1] * 8, [1] * 5],
                     ch=[[24], [40] * 4, [56] * 4, [112] * 4 + [136] * 4, [256] * 4 + [448]],
                     k=[[3], [5, 3, 3, 3], [7, 3, 5, 5], [7, 5, 5, 5, 5, 5, 5, 5], [7, 7, 7, 7, 7]],
                     e=[[1], [3, 3, 3, 3], [3, 3, 3, 3], [6, 3, 3, 3, 6, 3, 3, 3], [6, 6, 3, 3, 6]],
                     stem=48, head=1792),
}


def proxylessnas(version: str) -> Arch:
    """ProxylessNAS ``mobile``/``cpu``/``gpu``/``mobile14`` (zero-op units left out)."""
    cfg = _PROXYLESS[version]
    blocks, cin = [], cfg["stem"]
    for i, outs in enumerate(cfg["ch"]):
        for j, n in enumerate(outs):
            if not cfg["res"][i][j]:
                continue  # a zero op behind an identity shortcut: the unit is the identity
            s = 2 if j == 0 and i != 0 else 1
            blocks.append(_block(cin, n, cfg["k"][i][j], s, expand=cfg["e"][i][j]))
            cin = n
    return _arch(_merge(blocks), stem_ch=cfg["stem"], head_ch=cfg["head"], act="relu6")


# -- SPNASNet, FBNet-C (pytorchcv) ---------------------------------------------------------
def spnasnet() -> Arch:
    """Single-Path NAS (pytorchcv ``spnasnet``; stride 2 in the middle of its last stage)."""
    chans = [[24] * 3, [40] * 4, [80] * 4, [96] * 4 + [192] * 4]
    k3 = [[1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0] * 8]
    ef = [[3, 3, 3], [6, 3, 3, 3], [6, 3, 3, 3], [6, 3, 3, 3, 6, 6, 6, 6]]
    blocks = [_block(32, 16, 3, 1, expand=1, skip="none")]
    cin = 16
    for i, outs in enumerate(chans):
        for j, n in enumerate(outs):
            s = 2 if (j == 0 and i != 3) or (i == 3 and j == len(outs) // 2) else 1
            blocks.append(_block(cin, n, 3 if k3[i][j] else 5, s, expand=ef[i][j]))
            cin = n
    blocks.append(_block(cin, 320, 3, 1, expand=6, skip="none"))
    return _arch(_merge(blocks), stem_ch=32, head_ch=1280)


def fbnet_c() -> Arch:
    """FBNet-C as pytorchcv builds it (``fbnet_cb``): every unit keeps its 1x1 expansion."""
    chans = [[24] * 3, [32] * 4, [64] * 4 + [112] * 4, [184] * 4 + [352]]
    k3 = [[1, 1, 1], [0, 0, 0, 1], [0] * 8, [0, 0, 0, 0, 1]]
    ef = [[6, 1, 1], [6, 3, 6, 6], [6, 3, 6, 6, 6, 6, 6, 3], [6, 6, 6, 6, 6]]
    blocks = [_block(16, 16, 3, 1, expand=1, op="irf")]
    cin = 16
    for i, outs in enumerate(chans):
        for j, n in enumerate(outs):
            blocks.append(_block(cin, n, 3 if k3[i][j] else 5, 2 if j == 0 else 1, expand=ef[i][j],
                                 op="irf"))
            cin = n
    return _arch(_merge(blocks), stem_ch=16, head_ch=1984)


# -- EfficientNet-EdgeTPU (pytorchcv efficientnetedge.py) --------------------------------
_EDGE = {"small": (1.0, 1.0, 224), "medium": (1.1, 1.0, 240), "large": (1.4, 1.2, 300)}


def efficientnet_edge(version: str, resolution: int | None = None) -> Arch:
    """EfficientNet-EdgeTPU S/M/L as pytorchcv builds them (``efficientnet_edge_*_b``)."""
    depth, wf, native = _EDGE[version]
    layers = [int(math.ceil(n * depth)) for n in [1, 2, 4, 5, 4, 2]]
    chans = [make_divisible(c * wf, 8) for c in [24, 32, 48, 96, 144, 192]]
    exps, kernels = [4, 8, 8, 8, 8, 8], [3, 3, 3, 5, 5, 5]
    strides = [1, 2, 2, 2, 1, 2]
    stem = make_divisible(32 * wf, 8)
    head = make_divisible(1280 * wf, 8) if wf > 1.0 else 1280
    blocks, cin = [], stem
    for i, (n, reps, e, k, s0) in enumerate(zip(chans, layers, exps, kernels, strides)):
        for j in range(reps):
            s = s0 if j == 0 else 1
            if i == 0:  # EffiEdgeResUnit with mid_from_in=False, use_skip=False
                blocks.append(_block(cin, n, 3, s, n * e, op="fusedp", skip="none"))
            elif i < 3:
                blocks.append(_block(cin, n, 3, s, expand=e, op="fusedp"))
            else:
                blocks.append(_block(cin, n, k, s, expand=e))
            cin = n
    return _arch(_merge(blocks), resolution=resolution or native, stem_ch=stem, head_ch=head,
                 dropout=0.0)


# -- the registry part ----------------------------------------------------------------
def mobile_registry() -> tuple[dict[str, Arch], dict[str, str], dict[str, str]]:
    """``(networks, sources, aliases)`` of this module."""
    reg: dict[str, Arch] = {}
    src: dict[str, str] = {}
    alias: dict[str, str] = {}
    for ver in ("large", "small"):
        for m in (1.0, 0.75):
            name = f"mobilenetv3-{ver}-{m}"
            reg[name] = mobilenetv3_tfslim(ver, m)
            src[name] = TFSLIM_V3
        name = f"mobilenetv3-{ver}-minimalistic"
        reg[name] = mobilenetv3_tfslim(ver, 1.0, minimalistic=True)
        src[name] = TFSLIM_V3
        for tag, w in (("w7d20", 0.35), ("wd2", 0.5), ("w3d4", 0.75), ("w1", 1.0), ("w5d4", 1.25)):
            name = f"mobilenetv3_{ver}_{tag}"
            reg[name] = mobilenetv3_pytorchcv(ver, w)
            src[name] = PCV.format("mobilenetv3")
    for tag, w in (("w1", 1.0), ("w3d4", 0.75), ("wd2", 0.5), ("wd4", 0.25)):
        for b, rm in (("", False), ("b", True)):
            name = f"mobilenetv2{b}_{tag}"
            reg[name] = mobilenetv2_pytorchcv(w, remove_exp_conv=rm)
            src[name] = PCV.format("mobilenetv2")
    for ver in ("mobile", "cpu", "gpu", "mobile14"):
        name = f"proxylessnas-{ver}"
        reg[name] = proxylessnas(ver)
        src[name] = ("https://github.com/mit-han-lab/proxylessnas (ProxylessNAS, Cai et al. ICLR'19); "
                     + PCV.format("proxylessnas"))
        alias[f"proxylessnas_{ver}"] = name
    reg["spnasnet"] = spnasnet()
    src["spnasnet"] = ("Single-Path NAS, Stamoulis et al. 2019 (arXiv 1904.02877); "
                       + PCV.format("spnasnet"))
    reg["fbnet-c"] = fbnet_c()
    src["fbnet-c"] = ("FBNet, Wu et al. CVPR'19 (arXiv 1812.03443); " + PCV.format("fbnet"))
    alias["fbnet_cb"] = "fbnet-c"
    for ver, short in (("small", "s"), ("medium", "m"), ("large", "l")):
        name = f"efficientnet-edgetpu-{short}"
        reg[name] = efficientnet_edge(ver)
        src[name] = ("EfficientNet-EdgeTPU (tensorflow/tpu models/official/efficientnet/edgetpu), "
                     "as built by " + PCV.format("efficientnetedge"))
        # the mobile-ml-benchmark ran every network at 224x224 (its README)
        bname = f"efficientnet_edge_{ver}_b"
        reg[bname] = efficientnet_edge(ver, resolution=224)
        src[bname] = src[name] + "; at 224x224 as in the mobile-ml-benchmark"
    alias["mnasnet_a1"] = "mnasnet-a1"
    alias["mnasnet_b1"] = "mnasnet-b1"
    return reg, src, alias


def mobile_width_fns() -> dict[str, object]:
    """Width variants that follow a release's own scaling (name -> ``f(width) -> Arch``)."""
    fns: dict[str, object] = {}
    for ver in ("large", "small"):
        fns[f"mobilenetv3-{ver}-1.0"] = lambda w, v=ver: mobilenetv3_tfslim(v, w)
        fns[f"mobilenetv3_{ver}_w1"] = lambda w, v=ver: mobilenetv3_pytorchcv(v, w)
    fns["mobilenetv2_w1"] = lambda w: mobilenetv2_pytorchcv(w)
    fns["mobilenetv2b_w1"] = lambda w: mobilenetv2_pytorchcv(w, remove_exp_conv=True)
    return fns


MOBILE_REGISTRY, MOBILE_SOURCES, MOBILE_ALIASES = mobile_registry()
