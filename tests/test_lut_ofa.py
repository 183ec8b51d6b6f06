"""LUTs in the releases' own formats: the activation comes from the file, coverage is reported.

The LUTs are written here key by key as the releases build them:

* ProxylessNAS (``proxylessnas`` ``search/utils/latency_estimator.py``, OFA's
  ``ProxylessNASLatencyTable.query``): ``expanded_conv-input:HxWxC-output:HxWxC-expand:<ratio>
  -kernel:K-stride:S-idskip:B``, ``Conv``, ``Conv_1``, ``Logits-input:HxWxC-output:N``; ReLU6,
  recorded nowhere in the file (``mobile_trim.yaml``).
* OFA MobileNetV3 (``ofa/nas/efficiency_predictor/latency_lookup_table.py``
  ``MBv3LatencyTable.query``; ``ofa/tutorial/latency_table.py`` reads
  ``han-cai/files`` ``ofa/note10/<res>_lookup_table.yaml``): ``expand:<mid width>`` and
  ``-se:0|1-hs:0|1``; head ``Conv_1`` + ``AvgPool2D`` + ``Conv_2`` + ``Logits-input:1x1xC``.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest

from search.cli import main
from space import get_reference, get_space, resolve_arch, space_names
from space.reference_ofa_subnets import OFA_SUBNETS
from surrogate.lut import import_lut, parse_lut
from surrogate.tables import Table

REPO = Path(__file__).resolve().parents[1]
MBV2 = get_reference("mobilenetv2-1.0")
NOTE10 = sorted(n for n in OFA_SUBNETS if n.startswith("note10"))
NOTE10_30MS = "note10_lat-30ms_top1-78.4_finetune-75"  # OFA MBv3 w1.2: stem 24, head 1152, mix 1536


def _text(keys: list[str], ms: float = 1.0) -> str:
    keys = list(dict.fromkeys(keys))
    return "".join(f"{k}:\n  count: 50\n  mean: {ms + 0.01 * i!r}\n  var: 0.0001\n"
                   for i, k in enumerate(keys))


def lut_keys(arch, mbv3: bool) -> list[str]:
    """The keys ProxylessNAS (``mbv3`` False) or OFA's MBv3 table looks ``arch`` up by."""
    r = arch.resolution
    f = (r + 1) // 2
    keys = [f"Conv-input:{r}x{r}x3-output:{f}x{f}x{arch.stem_ch}"]
    for b in arch.blocks:
        cin = b.in_ch
        for i in range(b.repeats):
            s = b.stride if i == 0 else 1
            o = (f - 1) // s + 1
            skip = int(b.skip != "none" and s == 1 and cin == b.out_ch)
            k = (f"expanded_conv-input:{f}x{f}x{cin}-output:{o}x{o}x{b.out_ch}"
                 f"-expand:{(b.mid_ch or cin * b.expand) if mbv3 else b.expand}"
                 f"-kernel:{b.kernel}-stride:{s}-idskip:{skip}")
            if mbv3:
                k += f"-se:{int(b.se > 0)}-hs:{int((b.act or arch.act) == 'hswish')}"
            keys.append(k)
            f, cin = o, b.out_ch
    h = arch.head_ch
    keys.append(f"Conv_1-input:{f}x{f}x{cin}-output:{f}x{f}x{h}")
    if mbv3:
        return keys + [f"AvgPool2D-input:{f}x{f}x{h}-output:1x1x{h}",
                       f"Conv_2-input:1x1x{h}-output:1x1x{arch.mix_ch}",
                       f"Logits-input:1x1x{arch.mix_ch}-output:{arch.num_classes}"]
    return keys + [f"Logits-input:{f}x{f}x{h}-output:{arch.num_classes}"]


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return import_lut(*args, **kwargs)


# -- ProxylessNAS format: ReLU6 from the file, not from the space it is imported for ------------
PROXYLESS_EXAMPLE = "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0"


def test_proxyless_lut_is_relu6_against_the_mnasnet_space():
    text = _text(lut_keys(MBV2, mbv3=False) + [PROXYLESS_EXAMPLE])
    space = get_space("mnasnet")
    with pytest.warns(UserWarning) as rec:
        res = import_lut(text, target=space.operator_configs(), target_name="space mnasnet")
    assert (res.act, res.act_source) == ("relu6", "format")
    assert {r["act"] for r in res.rows} == {"relu6"}
    (msg,) = [str(w.message) for w in rec]
    # both activations named, and the coverage
    assert re.search(r"activation relu6 .* not that of space mnasnet \(relu\)", msg), msg
    assert f"covers 0 of {res.target_ops} operators of space mnasnet" in msg
    assert "with act relu, " in msg
    assert res.target_acts == ["relu"] and res.matched_ops == res.matched_entries == 0
    assert res.entries == len(parse_lut(text))
    # the rows are MobileNetV2's operators (relu6), every one of them
    assert {lc.key() for lc in MBV2.ops()} <= {r["op_key"] for r in res.rows}
    again = _quiet(text, target=MBV2.ops(), target_name="mobilenetv2-1.0")
    assert again.matched_ops == again.target_ops == len({lc.key() for lc in MBV2.ops()})
    assert again.matched_entries == again.entries - 1  # all but the MnasNet-only example
    assert "covers 14 of 14 operators of mobilenetv2-1.0 (15 of 16 LUT entries" in again.summary()


def test_cli_convert_proxyless_lut_onto_mnasnet_names_both_activations(tmp_path, capsys):
    lut = tmp_path / "mobile_trim.yaml"
    lut.write_text(_text(lut_keys(MBV2, mbv3=False)))
    dst = tmp_path / "mnasnet_ops.csv"
    assert main(["table", "convert", str(lut), str(dst)]) == 0
    out, err = capsys.readouterr()
    assert "act relu6 (ProxylessNAS keys: ReLU6)" in out and "covers 0 of" in out
    assert "warning: " in err and "relu6" in err and "space mnasnet (relu)" in err
    assert {r["act"] for r in Table.ops(dst).read()} == {"relu6"}


def test_flow_style_entries_parse():
    text = ("Conv-input:224x224x3-output:112x112x32: {count: 50, mean: 1.5, var: 0.01}\n"
            "Logits-input:7x7x1280-output:1000: {count: 50, mean: 0.5, var: 0.0}\n")
    assert parse_lut(text) == {
        "Conv-input:224x224x3-output:112x112x32": {"count": 50, "mean": 1.5, "var": 0.01},
        "Logits-input:7x7x1280-output:1000": {"count": 50, "mean": 0.5, "var": 0.0}}


# -- OFA MobileNetV3 (Note10) format: h-swish, SE, explicit widths, the MobileNetV3 head --------
def test_note10_keys_are_the_layers_our_grammar_builds():
    arch = resolve_arch(NOTE10_30MS)
    by_key = {lc.key(): lc for lc in arch.ops()}
    literal = [  # written out by hand from MBv3LatencyTable.query for this subnet at 224
        "Conv-input:224x224x3-output:112x112x24",
        "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
        "expanded_conv-input:56x56x32-output:28x28x48-expand:128-kernel:5-stride:2-idskip:0-se:1-hs:0",
        "expanded_conv-input:28x28x48-output:14x14x96-expand:192-kernel:5-stride:2-idskip:0-se:0-hs:1",
        "expanded_conv-input:14x14x96-output:14x14x136-expand:576-kernel:3-stride:1-idskip:0-se:1-hs:1",
        "expanded_conv-input:7x7x192-output:7x7x192-expand:1152-kernel:3-stride:1-idskip:1-se:1-hs:1",
        "Conv_1-input:7x7x192-output:7x7x1152", "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536", "Logits-input:1x1x1536-output:1000",
    ]
    assert set(literal) <= set(lut_keys(arch, mbv3=True))
    res = _quiet(_text(literal), target=arch.ops(), target_name=NOTE10_30MS)
    assert res.act == "hswish+relu" and res.act_source == "keys" and not res.left_out
    assert res.matched_ops == len(res.rows) == 8 and res.matched_entries == res.entries == 11
    rows = {r["op_key"]: r for r in res.rows}
    for key in rows:  # the same LayerConfig, field by field
        assert key in by_key
    se_relu = by_key[next(k for k in rows if "i56x56x32" in k)]
    assert (se_relu.act, se_relu.se, se_relu.se_base, se_relu.se_div, se_relu.se_gate, se_relu.se_ch) == \
        ("relu", 0.25, "mid", 8, "hsigmoid", 32)
    se_hs = by_key[next(k for k in rows if "i14x14x96_o14x14x136" in k)]
    assert (se_hs.act, se_hs.se_inner_act, se_hs.mid_ch, se_hs.residual) == ("hswish", "relu", 576, "none")
    head = next(r for r in res.rows if r["op"] == "head")
    # Conv_1 + AvgPool2D + Conv_2 + Logits, timed together as our head (mix 1536, no BN/bias)
    assert head["op_key"] == "head_i7x7x192_o1x1x1152_k1_s1_hswish_cls1000_mix1536-none"
    assert head["median_ms"] == pytest.approx(1.07 + 1.08 + 1.09 + 1.10)


@pytest.mark.parametrize("name", NOTE10)
def test_note10_lut_covers_its_subnet(name):
    arch = resolve_arch(name)
    res = _quiet(_text(lut_keys(arch, mbv3=True)), target=arch.ops(), target_name=name)
    n = len({lc.key() for lc in arch.ops()})
    assert res.matched_ops == res.target_ops == n and res.matched_entries == res.entries
    assert {r["act"] for r in res.rows} == {"relu", "hswish"} and not res.left_out
    assert {r["se"] for r in res.rows if r["op"] == "mbconv"} == {0.0, 0.25}


def test_note10_lut_coverage_over_all_note10_subnets():
    ops = [lc for n in NOTE10 for lc in resolve_arch(n).ops()]
    arch = resolve_arch(NOTE10_30MS)
    text = _text(lut_keys(arch, mbv3=True))
    res = _quiet(text, target=ops, target_name="the note10 subnets")
    assert res.target_ops == len({lc.key() for lc in ops}) > res.matched_ops
    assert res.matched_ops >= len({lc.key() for lc in arch.ops()})
    assert f"covers {res.matched_ops} of {res.target_ops} operators of the note10 subnets" in res.summary()
    assert "act hswish+relu (OFA MobileNetV3 keys" in res.summary()


def test_mbv3_lut_on_a_relu6_network_names_both_activations():
    relu6 = resolve_arch("cpu_lat-11ms_top1-72.0_finetune-25")  # an OFA ProxylessNAS subnet
    with pytest.warns(UserWarning, match=r"activation hswish\+relu .* not that of net \(relu6\)"):
        res = import_lut(_text(lut_keys(resolve_arch(NOTE10_30MS), mbv3=True)), target=relu6.ops(),
                         target_name="net")
    assert res.matched_ops == 0 and res.target_acts == ["relu6"]


def _reference_dir() -> Path:
    env = os.environ.get("MNAS_REFERENCE_DIR")
    return Path(env) if env else REPO.parent / "shared" / "reference"


def test_ofa_configs_keyed_as_ofa_keys_them():
    """Every ofa_specialized subnet, keyed from its net config as OFA's tables do, covers itself."""
    from space.reference_ofa import ofa_arch_from_config

    p = _reference_dir() / "ofa_specialized.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent (set MNAS_REFERENCE_DIR)")
    for cfg in json.loads(p.read_text()):
        r, mbv3 = cfg["image_size"], cfg["net"] == "MobileNetV3"
        f = (r + 1) // 2
        keys = [f"Conv-input:{r}x{r}x3-output:{f}x{f}x{cfg['stem']['out']}"]
        for b in cfg["blocks"]:
            o = (f - 1) // b["s"] + 1
            mid = b["mid"] if b["mid"] is not None else round(b["in"] * b["e"])
            keys.append(f"expanded_conv-input:{f}x{f}x{b['in']}-output:{o}x{o}x{b['out']}"
                        f"-expand:{mid if mbv3 else b['e']}-kernel:{b['k']}-stride:{b['s']}"
                        f"-idskip:{int(b['skip'])}"
                        + (f"-se:{int(b['se'])}-hs:{int(b['act'] == 'h_swish')}" if mbv3 else ""))
            f = o
        fm, ncls = cfg["feature_mix"], cfg["classifier"]["out"]
        if mbv3:
            fe = cfg["final_expand"]
            keys += [f"Conv_1-input:{f}x{f}x{fe['in']}-output:{f}x{f}x{fe['out']}",
                     f"AvgPool2D-input:{f}x{f}x{fe['out']}-output:1x1x{fe['out']}",
                     f"Conv_2-input:1x1x{fm['in']}-output:1x1x{fm['out']}",
                     f"Logits-input:1x1x{fm['out']}-output:{ncls}"]
        else:
            keys += [f"Conv_1-input:{f}x{f}x{fm['in']}-output:{f}x{f}x{fm['out']}",
                     f"Logits-input:{f}x{f}x{fm['out']}-output:{ncls}"]
        arch = ofa_arch_from_config(cfg)
        res = _quiet(_text(keys), target=arch.ops(), target_name=cfg["name"])
        assert res.matched_ops == res.target_ops and res.matched_entries == res.entries, cfg["name"]
        assert res.act == ("hswish+relu" if mbv3 else "relu6"), cfg["name"]


def test_cli_convert_note10_lut_onto_a_subnet(tmp_path, capsys):
    lut = tmp_path / "224_lookup_table.yaml"
    lut.write_text(_text(lut_keys(resolve_arch(NOTE10_30MS), mbv3=True)))
    dst = tmp_path / "ofa_ops.csv"
    assert main(["table", "convert", str(lut), str(dst), "--arch", NOTE10_30MS]) == 0
    out, err = capsys.readouterr()
    assert f"covers 17 of 17 operators of network {NOTE10_30MS} (20 of 20 LUT entries" in out
    assert "warning" not in err
    assert {r["act"] for r in Table.ops(dst).read()} == {"relu", "hswish"}


@pytest.mark.skipif("ofa-mbv3" not in space_names(), reason="the ofa-mbv3 space is not registered")
def test_note10_lut_onto_the_ofa_space():
    import numpy as np

    space = get_space("ofa-mbv3")
    ops = space.operator_configs()
    arch = space.sample(np.random.default_rng(0))
    res = _quiet(_text(lut_keys(arch, mbv3=True)), target=ops, target_name="space ofa-mbv3")
    member = {lc.key() for lc in arch.ops() if not lc.is_identity}
    assert res.matched_ops == len(member & {lc.key() for lc in ops}) > 0
    assert "operators of space ofa-mbv3" in res.summary()
