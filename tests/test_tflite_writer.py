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
from surrogate.measure.tflite_writer import WriterError, tflite_op_names, write_tflite  # noqa: E402


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
            elif isinstance(m, torch.nn.Linear):
                m.bias.copy_(torch.randn(m.out_features, generator=g) * 0.1)
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


def test_no_transposes_and_expected_vocabulary_in_networks():
    a = get_reference("mnasnet-a1")
    seq = tflite_op_names(write_tflite(build_model(a), input_shape(a)))
    assert set(seq) <= {"PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "LOGISTIC", "MUL", "ADD",
                        "FULLY_CONNECTED"}
    assert seq[-2:] == ["MEAN", "FULLY_CONNECTED"]


@pytest.mark.parametrize("name", ["mnasnet-a1", "mnasnet-b1-0.5", "mobilenetv2-1.0", "efficientnet-b0"])
def test_reference_networks_match_torch(name):
    a = get_reference(name)
    m = _randomise_bn(build_model(a))
    assert _max_rel_err(m, input_shape(a)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", reference_names())
def test_every_reference_network_matches_torch(name):
    a = get_reference(name)
    m = _randomise_bn(build_model(a))
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
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"head-no-conv"}))
def test_same_builtin_operators_as_litert_torch(family, tmp_path):
    from surrogate.measure.export import ExportCache

    lc = FAMILIES[family]
    m = build_op(lc)
    lt = ExportCache(tmp_path).export(m, op_input_shape(lc), "tflite", converter="litert-torch")
    assert tflite_op_names(write_tflite(m, op_input_shape(lc))) == tflite_op_names(lt.path.read_bytes())
