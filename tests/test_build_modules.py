"""space.modules / space.build: top-level (picklable) modules, a Net composed of the timed
operators, the TF release's initialisation, and the checkpoint key layout."""
from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest

from space import LayerConfig, get_reference, parse_arch

torch = pytest.importorskip("torch")

from space.build import build_layer, build_model, build_op, input_shape, op_input_shape  # noqa: E402
from space.modules import Head, Layer, Net, Stem  # noqa: E402

ARCH = parse_arch("res64_stem16_head96_cls10_silu:r1_k3_s11_e1_i16_o16_se0.25,"
                  "r2_k5_s22_e4_i16_o24_poolskip_irf_g2,r1_k3_s22_e1_i24_o32_conv")


def _lc(**kw) -> LayerConfig:
    base = dict(op="mbconv", h=14, w=14, in_ch=64, out_ch=64, kernel=5, stride=1, expand=6, se=0.0,
                skip="identity", groups=1, act="relu")
    return LayerConfig(**{**base, **kw})


def _std_ratio(conv: torch.nn.Conv2d) -> float:
    """Sample std of the weights over the TF release's sqrt(2 / (k*k*out // groups))."""
    kh, kw = conv.kernel_size
    fan_out = kh * kw * conv.out_channels // conv.groups
    return float(conv.weight.detach().std()) / math.sqrt(2.0 / fan_out)


def test_depthwise_init_divides_fan_out_by_groups():
    convs = [m for m in build_layer(_lc()).modules() if isinstance(m, torch.nn.Conv2d)]
    expand, dw, project = convs
    assert dw.groups == dw.in_channels == dw.out_channels == 384 and dw.kernel_size == (5, 5)
    # 9,600 draws: the sample std is within a few per cent of sqrt(2 / 25)
    assert _std_ratio(dw) == pytest.approx(1.0, abs=0.05)
    assert float(dw.weight.detach().std()) == pytest.approx(math.sqrt(2.0 / 25), rel=0.05)
    # not the fan_out of torch's kaiming_normal_(mode="fan_out"), k*k*out = 9,600
    assert float(dw.weight.detach().std()) > 10 * math.sqrt(2.0 / (25 * 384))
    for conv in (expand, project):
        assert conv.groups == 1 and _std_ratio(conv) == pytest.approx(1.0, abs=0.05)


def test_grouped_pointwise_init_divides_fan_out_by_groups():
    lc = _lc(op="irf", in_ch=64, out_ch=64, expand=4, groups=4, kernel=3)
    convs = [m for m in build_layer(lc).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.groups for c in convs] == [4, 256, 4]
    for conv in convs:
        assert _std_ratio(conv) == pytest.approx(1.0, abs=0.1)


def test_modules_pickle_and_run_the_same():
    net = build_model(ARCH)
    again = pickle.loads(pickle.dumps(net))
    x = torch.randn(input_shape(ARCH, 2))
    with torch.inference_mode():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)
    for lc in ARCH.ops():
        op = build_op(lc)
        x = torch.randn(op_input_shape(lc))
        with torch.inference_mode():
            torch.testing.assert_close(pickle.loads(pickle.dumps(op))(x), op(x), rtol=0, atol=0)


def test_net_is_composed_of_the_timed_operators():
    """net.stem / net.layers[i] / net.head are the modules build_op makes for arch.ops()."""
    net = build_model(ARCH)
    assert isinstance(net, Net) and isinstance(net.stem, Stem) and isinstance(net.head, Head)
    assert [type(m) for m in net.layers] == [Layer] * len(ARCH.layers())
    parts = [net.stem, *net.layers, net.head]
    x0 = torch.randn(input_shape(ARCH))
    x = x0
    with torch.inference_mode():
        for lc, part in zip(ARCH.ops(), parts):
            op = build_op(lc)
            assert type(op) is type(part)
            op.load_state_dict(part.state_dict())  # same parameters, same shapes
            torch.testing.assert_close(op(x), part(x), rtol=0, atol=0)
            x = part(x)
        torch.testing.assert_close(net(x0), x, rtol=0, atol=0)  # the net is exactly the chain


def test_state_dict_keeps_the_flat_checkpoint_layout():
    net = build_model(get_reference("mnasnet-small"))
    keys = list(net.state_dict())
    assert keys[:2] == ["stem.0.weight", "stem.1.weight"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert "head.0.weight" in keys
    assert not any(k.startswith(("head.conv.", "head.classifier.")) for k in keys)
    assert isinstance(net.stem[0], torch.nn.Conv2d)  # the stem is a conv-BN-act chain
    # both layouts load: the flat one (checkpoints) and the module paths (named_parameters)
    other = build_model(get_reference("mnasnet-small"), init_seed=1)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.head.classifier.weight, net.head.classifier.weight)
    nested = dict(build_model(get_reference("mnasnet-small"), init_seed=2).named_parameters())
    nested.update(dict(net.named_buffers()))
    other.load_state_dict(nested)
    assert torch.equal(other.head.conv[0].weight, nested["head.conv.0.weight"])
    # under a wrapper (DDP's "module." prefix) too
    wrap = torch.nn.Module()
    wrap.module = other
    assert "module.classifier.weight" in wrap.state_dict()
    wrap.load_state_dict(wrap.state_dict())


def test_import_space_build_needs_no_torch():
    code = ("import sys; import space, space.build as b; from space import get_reference; "
            "b.input_shape(get_reference('mnasnet-a1')); print('torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "False"


@pytest.mark.slow
def test_convert_many_sends_project_modules_to_spawned_workers(tmp_path):
    """export.convert_many's precondition (picklable modules) holds for space.build's modules."""
    pytest.importorskip("ai_edge_litert")
    from surrogate.measure.export import ExportCache, convert_many

    ops = [ARCH.stem_config(), ARCH.layers()[1], ARCH.head_config()]
    jobs = [(build_op(lc), op_input_shape(lc)) for lc in ops] + [(build_model(ARCH), input_shape(ARCH))]
    res = convert_many(jobs, "tflite", ExportCache(tmp_path), processes=2)
    assert [r.cached for r in res] == [False] * 4
    assert all(r.path.read_bytes()[4:8] == b"TFL3" for r in res)
