"""The ProxylessNAS / Once-for-All latency LUT format, to and from operator tables.

The format is YAML-like text keyed by
``expanded_conv-input:HxWxC-output:HxWxC-expand:e-kernel:k-stride:s-idskip:b``
with ``count``, ``mean`` and ``var`` in ms. Only MBConv rows without SE, groups 1
and no pooled skip are expressible.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Mapping

from space.arch import LayerConfig

from .tables import LEGACY_CLOCK, LEGACY_ESTIMATOR, TableError, op_row_key

__all__ = ["lut_key", "export_lut", "parse_lut", "lut_to_rows"]

_LUT_KEY = re.compile(
    r"^expanded_conv-input:(\d+)x(\d+)x(\d+)-output:(\d+)x(\d+)x(\d+)-expand:(\d+)-kernel:(\d+)"
    r"-stride:(\d+)-idskip:([01])(?:-se:0-hs:0)?$")
_ANY_LUT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-input:\d+x\d+x\d+(-[A-Za-z_]+:[0-9x.]+)*$")


def lut_key(row: Mapping) -> str | None:
    """OFA key of an operator row (None for ops the format cannot express)."""
    if row["op"] != "mbconv" or float(row["se"]) != 0.0 or int(row["groups"]) != 1 \
            or row["residual"] == "pool":
        return None
    out_h = (int(row["h"]) + 2 * (int(row["kernel"]) // 2) - int(row["kernel"])) // int(row["stride"]) + 1
    return (f"expanded_conv-input:{row['h']}x{row['w']}x{row['in_ch']}"
            f"-output:{out_h}x{out_h}x{row['out_ch']}-expand:{row['expand']}"
            f"-kernel:{row['kernel']}-stride:{row['stride']}"
            f"-idskip:{1 if row['residual'] == 'add' else 0}")


def export_lut(rows: Iterable[Mapping]) -> tuple[str, int]:
    """Rows -> OFA LUT text; returns (text, number of rows it could not express)."""
    lines, skipped = [], 0
    for r in rows:
        k = lut_key(r)
        if k is None:
            skipped += 1
            continue
        n = int(r["n_runs"])
        var = float(r["std_ms"]) ** 2
        lines.append(f"{k}:\n  count: {n}\n  mean: {float(r['median_ms'])!r}\n  var: {var!r}\n")
    return "".join(lines), skipped


def parse_lut(text: str, source: str = "<lut>") -> dict[str, dict]:
    """OFA LUT text (the YAML subset those files use) -> ``{key: {count, mean, var}}``."""
    out: dict[str, dict] = {}
    cur = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            key = line.rstrip().rstrip(":").strip()
            if not _ANY_LUT_KEY.match(key):
                raise TableError(f"{source}:{lineno}: not a LUT key such as "
                                 f"'expanded_conv-input:HxWxC-output:...': {key[:80]!r}")
            if key in out:
                raise TableError(f"{source}:{lineno}: duplicate LUT key {key!r}")
            cur = out.setdefault(key, {})
            continue
        if cur is None:
            raise TableError(f"{source}:{lineno}: value before any key")
        name, _, val = line.strip().partition(":")
        if name not in ("count", "mean", "var"):
            raise TableError(f"{source}:{lineno}: unknown LUT field {name!r} (count, mean, var)")
        try:
            cur[name] = int(val) if name == "count" else float(val)
        except ValueError:
            raise TableError(f"{source}:{lineno}: {name} must be a number, got {val.strip()!r}") from None
    for k, v in out.items():
        if set(v) != {"count", "mean", "var"}:
            raise TableError(f"{source}: entry {k!r} lacks {sorted({'count', 'mean', 'var'} - set(v))}")
    return out


def lut_to_rows(lut: Mapping[str, Mapping], act: str = "relu") -> list[dict]:
    """OFA LUT ``expanded_conv`` entries -> operator-table rows (MBConv, no SE, groups 1).

    Other entries (``Conv``, ``Conv_1``, ``AvgPool2D``, ``Logits``, SE or h-swish
    variants) have no operator-table equivalent and are left out; compare
    ``len(lut)`` with the result to see how many.
    """
    rows = []
    for key, v in lut.items():
        m = _LUT_KEY.match(key)
        if not m:
            continue
        h, w, cin, _, _, cout, e, k, s, skip = (int(x) for x in m.groups())
        res = "add" if skip and s == 1 and cin == cout else "none"
        lc = LayerConfig(op="mbconv", h=h, w=w, in_ch=cin, out_ch=cout, kernel=k, stride=s,
                         expand=e, se=0.0, skip="identity" if res == "add" else "none", groups=1,
                         act=act)
        std = math.sqrt(max(float(v["var"]), 0.0))
        mean = float(v["mean"])
        rows.append({**op_row_key(lc), "median_ms": mean, "wall_ms": mean, "cpu_ms": math.nan,
                     "clock": LEGACY_CLOCK, "estimator": LEGACY_ESTIMATOR, "clock_diverged": False,
                     "mean_ms": mean, "std_ms": std,
                     "p10_ms": math.nan, "p90_ms": math.nan, "iqr_ms": math.nan,
                     "cv": std / mean if mean > 0 else math.nan, "rel_spread": math.nan,
                     "n_runs": int(v["count"]), "n_rounds": 1, "remeasured": False,
                     "ref_ms": math.nan, "measured_at": "imported"})
    return rows
