"""The two ``expanded_conv`` key forms of the ProxylessNAS / Once-for-All LUTs, and their layers.

Keys as the releases build them (``"-".join`` of ``name:value`` parts):

* ProxylessNAS (``proxylessnas`` ``search/utils/latency_estimator.py`` ``LatencyEstimator.predict``;
  ``once-for-all`` ``ofa/nas/efficiency_predictor/latency_lookup_table.py``
  ``ProxylessNASLatencyTable.query``; e.g. ``han-cai/files`` ``proxylessnas/mobile_trim.yaml``):
  ``expanded_conv-input:HxWxC-output:HxWxC-expand:E-kernel:K-stride:S-idskip:B`` with ``E`` the
  expansion *ratio*. The key records no activation: ProxylessNAS's MBConv uses ReLU6
  throughout (stem ``Conv`` and ``Conv_1`` too), and so does OFA's ProxylessNAS space.
* OFA MobileNetV3 (``MBv3LatencyTable.query`` there, and ``ofa/tutorial/latency_table.py``, which
  reads ``han-cai/files`` ``ofa/<device>/<resolution>_lookup_table.yaml``, e.g. ``note10``):
  the same, then ``-se:0|1-hs:0|1``, and ``expand:`` is the expanded *width* (``mid``, the
  depthwise conv's channels), not a ratio. ``hs:1`` is h-swish, ``hs:0`` ReLU (OFA's
  MobileNetV3 stages are ``relu, relu, h_swish, h_swish, h_swish``); ``se:1`` is OFA's SE:
  squeeze ``make_divisible(mid // 4, 8)`` of the expanded width, ReLU inside, hard-sigmoid
  gate (``se0.25_sem_sed8_sehs_serelu``). Stem ``Conv``, ``Conv_1`` (final expand) and
  ``Conv_2`` (feature mix, no BN or bias) are h-swish.

:func:`mbconv_config` turns either form into the :class:`LayerConfig` that
:meth:`space.arch.Arch.layers` builds for the same layer (same key).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable

from space.arch import MAX_EXPAND, LayerConfig, conv_out, expand_for

_DIMS = r"(\d+)x(\d+)x(\d+)"
MBCONV_KEY = re.compile(
    rf"^expanded_conv-input:{_DIMS}-output:{_DIMS}-expand:(\d+)-kernel:(\d+)"
    r"-stride:(\d+)-idskip:([01])(?:-se:([01])-hs:([01]))?$")

PROXYLESS_ACT = "relu6"   # ProxylessNAS's MBConv, stem and feature mix
MBV3_ACT = "hswish"       # OFA MobileNetV3's stem, final expand and feature mix (hs:1 blocks)
MBV3_RELU = "relu"        # OFA MobileNetV3's hs:0 blocks
#: OFA's SE (ofa/utils/layers.py SEModule; MobileNetV3 SE in our grammar)
OFA_SE = dict(se=0.25, se_base="mid", se_div=8, se_gate="hsigmoid", se_act="relu")


def lut_family(keys: Iterable[str]) -> str:
    """``mbv3`` when any key is in OFA's MobileNetV3 form (``-se:-hs:`` fields or a
    ``Conv_2`` feature mix), else ``proxyless``."""
    for k in keys:
        m = MBCONV_KEY.match(k)
        if (m and m.group(11) is not None) or k.startswith("Conv_2-"):
            return "mbv3"
    return "proxyless"


def mbconv_config(key: str, act: str, divisor: int = 1) -> LayerConfig:
    """The ``mbconv`` layer of an ``expanded_conv`` key (ValueError naming what is off).

    ``act``: the activation of a key that records none (ProxylessNAS form); an MBv3 key's
    own ``hs:`` field decides (``hs:1`` h-swish, ``hs:0`` ReLU). ``divisor``: the target's
    expanded-width rounding (it only decides whether the width needs an explicit ``m``).
    """
    m = MBCONV_KEY.match(key)
    if m is None:
        raise ValueError("not an expanded_conv key")
    h, w, cin, oh, ow, cout, e, k, s, skip = (int(x) for x in m.groups()[:10])
    mbv3 = m.group(11) is not None
    if (oh, ow) != (conv_out(h, k, s), conv_out(w, k, s)):
        raise ValueError("output size not input / stride")
    same = s == 1 and cin == cout
    if skip and not same:
        raise ValueError("idskip:1 without stride 1 and input width == output width")
    kw: dict = dict(op="mbconv", h=h, w=w, in_ch=cin, out_ch=cout, kernel=k, stride=s, se=0.0,
                    groups=1, skip="none" if same and not skip else "identity",
                    expand_divisor=divisor)
    if not mbv3:
        if not 1 <= e <= MAX_EXPAND:
            raise ValueError(f"expand ratio {e} outside 1..{MAX_EXPAND}")
        return LayerConfig(expand=e, act=act, **kw)
    lc_act = MBV3_ACT if int(m.group(12)) else MBV3_RELU
    if int(m.group(11)):
        kw.update(OFA_SE, se_act="" if OFA_SE["se_act"] == lc_act else OFA_SE["se_act"])
    lc = LayerConfig(expand=expand_for(e, cin), act=lc_act, **kw)
    return lc if lc.mid_ch == e else dataclasses.replace(lc, mid=e)
