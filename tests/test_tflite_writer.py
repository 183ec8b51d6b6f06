"""The direct LiteRT writer: outputs equal the torch module's, graphs equal litert-torch's."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

from space.arch import LayerConfig  # noqa: E402
from space.build import build_model, build_op, input_shape, op_input_shape  # noqa: E402
from space.reference import get_reference, reference_names  # noqa: E402
from surrogate.measure.tflite_writer import (WriterError, graph_differences, tflite_op_details,  # noqa: E402
                                             tflite_op_names, write_tflite)


def _lc(**kw) -> LayerConfig:
    base = dict(op="mbconv", h=14, w=14, in_ch=16, out_ch=24, kernel=3, stride=1, expand=3, se=0.0,
                skip="identity", groups=1, act="relu")
    base.update(kw)
    return LayerConfig(**base)


# Every op family: regular conv (+SE), depthwise-separable (e1), MBConv e3/e6/e9 with and
# without SE under each skip kind and stride (odd and even sizes), FBNet irf with grouped
# 1x1 convs and channel shuffle, skip/projection, stem and head.
FAMILIES = {
    "conv-k3-s1-relu": _lc(op="conv", expand=1),
    "conv-k5-s2-se-relu6": _lc(op="conv", expand=1, kernel=5, stride=2, se=0.5, act="relu6"),
    "dwsep-e1-k3-add": _lc(expand=1, in_ch=24),
    "mbconv-e3-k5-s2-none": _lc(kernel=5, stride=2),
    "mbconv-e6-k3-se-silu-add": _lc(expand=6, se=0.25, in_ch=24, act="silu"),
    "mbconv-e9-k7-s1-none": _lc(expand=9, kernel=7, skip="none", in_ch=24),
    "mbconv-e6-k3-s2-pool-odd-hswish": _lc(expand=6, stride=2, skip="pool", h=15, w=15, act="hswish"),
    "mbconv-e3-k3-s2-pool-even": _lc(stride=2, skip="pool", h=16, w=16),
    "mbconv-e3-s1-pool-width": _lc(skip="pool"),
    "mbconv-e1-se-pool-add": _lc(expand=1, se=0.25, skip="pool", in_ch=24),
    "irf-e1-g1": _lc(op="irf", expand=1),
    "irf-e3-g2-add": _lc(op="irf", expand=3, groups=2, in_ch=24),
    "irf-e6-k5-s2-g2": _lc(op="irf", expand=6, kernel=5, stride=2, groups=2),
    "skip-projection-s2": _lc(op="skip", kernel=1, expand=1, stride=2),
    "skip-projection-width": _lc(op="skip", kernel=1, expand=1),
    "stem": LayerConfig(op="stem", h=32, w=32, in_ch=3, out_ch=16, kernel=3, stride=2, expand=1, se=0.0,
                        skip="none", groups=1, act="relu"),
    "head": LayerConfig(op="head", h=7, w=7, in_ch=32, out_ch=64, kernel=1, stride=1, expand=1, se=0.0,
                        skip="none", groups=1, act="silu", num_classes=10),
    "head-no-conv": LayerConfig(op="head", h=7, w=7, in_ch=32, out_ch=0, kernel=1, stride=1, expand=1,
                                se=0.0, skip="none", groups=1, act="relu", num_classes=10),
}

# MobileNetV3's SE (se0.25_sem_sed8_sehs_serelu)
_V3_SE = dict(se=0.25, se_base="mid", se_div=8, se_gate="hsigmoid", se_act="relu")


def _head(**kw) -> LayerConfig:
    base = dict(op="head", h=7, w=7, in_ch=32, out_ch=64, kernel=1, stride=1, expand=1, se=0.0,
                skip="none", groups=1, act="hswish", num_classes=10)
    base.update(kw)
    return LayerConfig(**base)


# The issue-L forms: per-block activations (hswish, relu6, silu), SE variants (squeeze on the
# expanded width, sed8 rounding, hard-sigmoid gate, its own inner activation), explicit
# expanded width, fused-MBConv (fused / fusedp, e1 single conv), k7 depthwise, the
# MobileNetV3 mix head (bias / BN / plain) and the classifier without bias.
NEW_FAMILIES = {
    "mbconv-e3-k5-hswish-v3se-add": _lc(kernel=5, act="hswish", in_ch=24, **_V3_SE),
    "mbconv-m72-k7-s2-even-hsigse-hswish-inner": _lc(expand=4, mid=72, kernel=7, stride=2, h=16, w=16,
                                                     act="hswish", se=0.25, se_gate="hsigmoid"),
    "mbconv-e6-k7-s2-odd-relu6-sigse-mid-d8": _lc(expand=6, kernel=7, stride=2, h=15, w=15, act="relu6",
                                                  se=0.25, se_base="mid", se_div=8),
    "mbconv-e4-silu-hsigse-silu": _lc(expand=4, act="silu", se=0.25, se_gate="hsigmoid"),
    "mbconv-e3-relu-sigse-hswish-inner": _lc(act="relu", se=0.25, se_act="hswish"),
    "dwsep-e1-k7-hswish-v3se-add": _lc(expand=1, kernel=7, in_ch=24, act="hswish", **_V3_SE),
    "fused-e4-k3-s2-even": _lc(op="fused", expand=4, stride=2, h=16, w=16),
    "fused-e4-add-v3se-hswish": _lc(op="fused", expand=4, in_ch=24, act="hswish", **_V3_SE),
    "fused-e1-single-conv-s2-se": _lc(op="fused", expand=1, stride=2, se=0.25),
    "fusedp-e4-s2-even": _lc(op="fusedp", expand=4, stride=2, h=16, w=16, act="relu6"),
    "fusedp-e1-s2-odd": _lc(op="fusedp", expand=1, stride=2, h=15, w=15),
    "conv-k3-hswish-v3se": _lc(op="conv", expand=1, act="hswish", **_V3_SE),
    "stem-hswish": LayerConfig(op="stem", h=32, w=32, in_ch=3, out_ch=16, kernel=3, stride=2, expand=1,
                               se=0.0, skip="none", groups=1, act="hswish"),
    "head-hswish-nofcbias": _head(fc_bias=False),
    "mixhead-bias-hswish": _head(mix_ch=128),
    "mixhead-bn-relu": _head(mix_ch=128, mix_norm="bn", act="relu"),
    "mixhead-plain-nofcbias-silu": _head(mix_ch=128, mix_norm="none", fc_bias=False, act="silu"),
    "mixhead-no-conv": _head(out_ch=0, mix_ch=128),
}
FAMILIES.update(NEW_FAMILIES)

# Whole networks of the issue-L forms: MobileNetV3 (TF-slim, pytorchcv), an OFA subnet,
# EfficientNet-EdgeTPU (fused-MBConv), ProxylessNAS (k7, relu6).
NEW_NETWORKS = ["mobilenetv3-large-1.0", "mobilenetv3-small-1.0", "mobilenetv3_small_w1",
                "note10_lat-8ms_top1-71.4_finetune-25", "efficientnet-edgetpu-s", "proxylessnas-mobile"]


def _randomise_bn(module, seed: int = 0):
    """Non-trivial BN statistics, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                # biases too (SE and mix convs, classifier; nofcbias has none), so that the
                # hard sigmoid's "+ 3" folded into a conv bias is tested on non-zero biases
                m.bias.copy_(torch.randn(m.bias.shape[0], generator=g) * 0.1)
    return module.eval()


def _calibrate_bn(module, shape, seed: int = 0):
    """BN statistics of a trained network: running mean/var estimated on random inputs, random affine.

    For whole networks: with :func:`_randomise_bn` on untrained weights (fan-out init, BN
    statistics that do not normalise) the activations of deep networks grow to 1e3-1e4
    (the deepest OFA subnets reach logits of 500-5000), where float32 summation order alone
    moves the output by 1e-4 of its scale (torch float32 vs float64 by up to 5e-5, the LiteRT
    kernels on litert-torch's own graph by 4e-4). Statistics estimated on data normalise each
    layer as in a trained network and still differ per channel, so folding is tested.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:  # the affine part first: the statistics below see its effect downstream
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
        for m in module.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape[0], generator=g) * 0.1)
        module.train()
        module(torch.randn(2, *shape[1:], generator=g))
    return module.eval()


def _run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    assert tuple(inp["shape"]) == (x.shape[0], *x.shape[2:], x.shape[1])  # NHWC input
    it.set_tensor(inp["index"], np.ascontiguousarray(np.moveaxis(x, 1, -1)))
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    return np.moveaxis(y, -1, 1) if y.ndim == 4 else y


def _max_rel_err(module, shape, seed: int = 0) -> float:
    data = write_tflite(module, shape)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    y = _run_tflite(data, x)
    assert y.shape == ref.shape
    return float(np.max(np.abs(y - ref)) / max(1.0, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_op_family_matches_torch(family):
    lc = FAMILIES[family]
    m = _randomise_bn(build_op(lc))
    assert _max_rel_err(m, op_input_shape(lc)) < 1e-4


def test_op_sequences_of_families():
    seq = {f: tflite_op_names(write_tflite(build_op(lc), op_input_shape(lc))) for f, lc in FAMILIES.items()}
    assert seq["mbconv-e6-k3-se-silu-add"] == [
        "CONV_2D", "LOGISTIC", "MUL", "DEPTHWISE_CONV_2D", "LOGISTIC", "MUL", "MEAN", "CONV_2D", "LOGISTIC",
        "MUL", "CONV_2D", "LOGISTIC", "MUL", "CONV_2D", "ADD"]
    assert seq["conv-k3-s1-relu"] == ["CONV_2D"]                     # ReLU fused, SAME padding
    assert seq["mbconv-e3-k5-s2-none"][:3] == ["CONV_2D", "PAD", "DEPTHWISE_CONV_2D"]  # even size, s2
    assert "PAD" not in seq["mbconv-e6-k3-s2-pool-odd-hswish"][:4]   # odd size: SAME is exact
    assert seq["mbconv-e6-k3-s2-pool-odd-hswish"][-4:] == ["AVERAGE_POOL_2D", "MUL", "CONV_2D", "ADD"]
    assert seq["irf-e3-g2-add"].count("TRANSPOSE") == 3 and seq["irf-e3-g2-add"].count("RESHAPE") == 2
    assert seq["head"] == ["CONV_2D", "LOGISTIC", "MUL", "MEAN", "FULLY_CONNECTED"]
    # issue L: h-swish is the HARD_SWISH builtin; the hard-sigmoid SE gate is the expand
    # conv (+3 in its bias, RELU6 fused) and MUL by 1/6, then the MUL gating the input
    assert seq["mbconv-e3-k5-hswish-v3se-add"] == [
        "CONV_2D", "HARD_SWISH", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "CONV_2D", "MUL", "MUL",
        "CONV_2D", "ADD"]
    assert seq["mbconv-m72-k7-s2-even-hsigse-hswish-inner"][:8] == [
        "CONV_2D", "HARD_SWISH", "PAD", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "HARD_SWISH"]
    assert seq["mbconv-e6-k7-s2-odd-relu6-sigse-mid-d8"] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "CONV_2D", "CONV_2D", "LOGISTIC", "MUL", "CONV_2D"]
    assert seq["fused-e4-add-v3se-hswish"] == [
        "CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "CONV_2D", "MUL", "MUL", "CONV_2D", "ADD"]
    single = seq["fused-e1-single-conv-s2-se"]                     # kxk conv (even size, s2: PAD) + SE
    assert single[0] == "PAD" and single.count("CONV_2D") == 3
    assert seq["fusedp-e4-s2-even"] == ["CONV_2D", "CONV_2D"]          # stride on the 1x1 projection: VALID
    assert seq["mixhead-bias-hswish"] == ["CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "HARD_SWISH",
                                          "FULLY_CONNECTED"]
    assert seq["mixhead-plain-nofcbias-silu"] == ["CONV_2D", "LOGISTIC", "MUL", "MEAN", "CONV_2D", "LOGISTIC",
                                                  "MUL", "FULLY_CONNECTED"]
    assert seq["mixhead-no-conv"] == ["TRANSPOSE", "MEAN", "RESHAPE", "CONV_2D", "HARD_SWISH", "FULLY_CONNECTED"]


def test_hard_sigmoid_se_and_mix_head_details():
    """Constants and options of the issue-L forms, as litert-torch 0.10 writes them."""
    lc = FAMILIES["mbconv-e3-k5-hswish-v3se-add"]
    m = _randomise_bn(build_op(lc))
    ops = tflite_op_details(write_tflite(m, op_input_shape(lc)))
    mean, reduce, expand, scale, gate = ops[4:9]
    assert mean["inputs"][1][1].tolist() == [2, 1] and mean["options"]["keepDims"]  # litert-torch's axis order
    assert reduce["options"]["fusedActivationFunction"] == 1                         # serelu: RELU fused
    assert expand["options"]["fusedActivationFunction"] == 3                         # RELU6 fused ...
    se = m.body[2]
    assert np.allclose(expand["inputs"][2][1], se.expand.bias.detach().numpy() + 3, atol=1e-6)  # ... bias + 3
    assert scale["inputs"][1][1].shape == () and np.isclose(scale["inputs"][1][1], 1 / 6)        # scalar 1/6
    assert gate["inputs"][0] == ("act", (1, 14, 14, 72)) and gate["inputs"][1] == ("act", (1, 1, 1, 72))
    assert se.reduce.out_channels == 24  # sem + sed8: make_divisible(72 * 0.25, 8)
    # mix head: MEAN keeps dims, the FC takes the 4-D pooled tensor (keepNumDims false, version 1)
    for fam, bias in (("mixhead-bias-hswish", True), ("mixhead-plain-nofcbias-silu", False)):
        lc = FAMILIES[fam]
        ops = tflite_op_details(write_tflite(_randomise_bn(build_op(lc)), op_input_shape(lc)))
        fc = ops[-1]
        assert fc["inputs"][0] == ("act", (1, 1, 1, 128)) and fc["outputs"] == [(1, 10)]
        assert not fc["options"]["keepNumDims"] and fc["version"] == 1
        assert (fc["inputs"][2] is not None) == bias
    # the plain head keeps its 2-D FC (version 5), with no bias input under nofcbias
    lc = FAMILIES["head-hswish-nofcbias"]
    fc = tflite_op_details(write_tflite(_randomise_bn(build_op(lc)), op_input_shape(lc)))[-1]
    assert fc["inputs"][0] == ("act", (1, 64)) and fc["inputs"][2] is None
    assert fc["options"]["keepNumDims"] and fc["version"] == 5


def test_operator_versions_follow_tflite_rules():
    """One operator code per builtin, at the highest version any use needs (as the converter sets it)."""
    lc = FAMILIES["irf-e3-g2-add"]
    ops = tflite_op_details(write_tflite(build_op(lc), op_input_shape(lc)))
    versions = {o["op"]: o["version"] for o in ops}
    assert versions["CONV_2D"] == 6      # grouped 1x1 convs
    assert versions["TRANSPOSE"] == 4    # the shuffle's 5-D transpose (the 4-D ones share the code)
    lc = FAMILIES["mbconv-e6-k3-se-silu-add"]
    assert {o["version"] for o in tflite_op_details(write_tflite(build_op(lc), op_input_shape(lc)))} == {1}


def test_standalone_hard_sigmoid_is_add_relu6_then_mul():
    m = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Hardsigmoid()).eval()
    ops = tflite_op_details(write_tflite(m, (1, 8, 6, 6)))
    assert [o["op"] for o in ops] == ["CONV_2D", "ADD", "MUL"]
    assert ops[1]["options"]["fusedActivationFunction"] == 3 and float(ops[1]["inputs"][1][1]) == 3.0
    assert _max_rel_err(m, (1, 8, 6, 6)) < 1e-6


def test_graph_differences_reports_what_differs():
    a = FAMILIES["mixhead-bias-hswish"]
    d1 = write_tflite(_randomise_bn(build_op(a)), op_input_shape(a))
    assert graph_differences(d1, d1) == []
    d2 = write_tflite(_randomise_bn(build_op(a), seed=1), op_input_shape(a))
    assert any("constants differ" in d for d in graph_differences(d1, d2))
    b = FAMILIES["mixhead-bn-relu"]
    assert graph_differences(d1, write_tflite(build_op(b), op_input_shape(b)))[0].startswith("operators")


def test_no_transposes_and_expected_vocabulary_in_networks():
    a = get_reference("mnasnet-a1")
    seq = tflite_op_names(write_tflite(build_model(a), input_shape(a)))
    assert set(seq) <= {"PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "LOGISTIC", "MUL", "ADD",
                        "FULLY_CONNECTED"}
    assert seq[-2:] == ["MEAN", "FULLY_CONNECTED"]


def test_mobilenetv3_vocabulary():
    a = get_reference("mobilenetv3-large-1.0")
    seq = tflite_op_names(write_tflite(build_model(a), input_shape(a)))
    assert set(seq) == {"PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "MUL", "ADD",
                        "FULLY_CONNECTED"}
    assert seq[-5:] == ["HARD_SWISH", "MEAN", "CONV_2D", "HARD_SWISH", "FULLY_CONNECTED"]
    assert seq.count("MEAN") == 1 + sum(b.repeats for b in a.blocks if b.se > 0)  # each SE + the head


@pytest.mark.parametrize("name", ["mnasnet-a1", "mnasnet-b1-0.5", "mobilenetv2-1.0", "efficientnet-b0",
                                  *NEW_NETWORKS])
def test_reference_networks_match_torch(name):
    a = get_reference(name)
    m = _calibrate_bn(build_model(a), input_shape(a))
    assert _max_rel_err(m, input_shape(a)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", reference_names())
def test_every_reference_network_matches_torch(name):
    a = get_reference(name)
    m = _calibrate_bn(build_model(a), input_shape(a))
    assert _max_rel_err(m, input_shape(a)) < 1e-4


def test_unsupported_module_fails_in_one_line_naming_the_exporter():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Upsample(scale_factor=2)).eval()
    with pytest.raises(WriterError) as exc:
        write_tflite(m, (1, 3, 8, 8))
    msg = str(exc.value)
    assert "\n" not in msg and "Upsample" in msg and "litert-torch" in msg


def test_bad_input_and_identity_and_training_mode():
    with pytest.raises(ValueError, match="NCHW"):
        write_tflite(build_op(FAMILIES["stem"]), (3, 32, 32))
    ident = _lc(op="skip", kernel=1, expand=1, in_ch=24, out_ch=24)
    with pytest.raises(WriterError, match="identity"):
        write_tflite(build_op(ident), op_input_shape(ident))
    with pytest.raises(WriterError, match="eval"):
        write_tflite(build_op(FAMILIES["stem"]).train(), (1, 3, 32, 32))


def test_export_cache_uses_the_writer_by_default(tmp_path):
    from surrogate.measure.export import ExportCache

    lc = FAMILIES["irf-e3-g2-add"]
    cache = ExportCache(tmp_path)
    r = cache.export(build_op(lc), op_input_shape(lc), "tflite")
    assert not r.cached and r.path.read_bytes()[4:8] == b"TFL3"
    assert cache.export(build_op(lc), op_input_shape(lc), "tflite").cached
    k_direct = cache.key(build_op(lc), op_input_shape(lc), "tflite")
    k_lt = cache.key(build_op(lc), op_input_shape(lc), "tflite", converter="litert-torch")
    assert k_direct != k_lt
    with pytest.raises(ValueError, match="converter"):
        cache.key(build_op(lc), op_input_shape(lc), "tflite", converter="tf")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None,
                    reason="litert-torch (the reference converter, extra 'litert-torch') not installed")
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_graph_as_litert_torch(family, tmp_path):
    """Same operators, versions, options and constants as litert-torch, on random BN and biases."""
    from surrogate.measure.export import ExportCache

    lc = FAMILIES[family]
    m = _randomise_bn(build_op(lc))
    lt = ExportCache(tmp_path).export(m, op_input_shape(lc), "tflite", converter="litert-torch")
    direct = write_tflite(m, op_input_shape(lc))
    assert tflite_op_names(direct) == tflite_op_names(lt.path.read_bytes())
    assert graph_differences(direct, lt.path.read_bytes()) == []


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None,
                    reason="litert-torch (the reference converter, extra 'litert-torch') not installed")
@pytest.mark.parametrize("name", [*NEW_NETWORKS, "fbnet-c", "mnasnet-a1"])
def test_same_network_graphs_as_litert_torch(name, tmp_path):
    from surrogate.measure.export import ExportCache

    a = get_reference(name)
    m = _randomise_bn(build_model(a))
    lt = ExportCache(tmp_path).export(m, input_shape(a), "tflite", converter="litert-torch")
    assert graph_differences(write_tflite(m, input_shape(a)), lt.path.read_bytes()) == []
