"""The ProxylessNAS / Once-for-All latency LUT format, to and from operator tables.

The format is YAML-like text, one entry per operator with ``count``, ``mean`` and
``var`` (ms), keyed like
``expanded_conv-input:HxWxC-output:HxWxC-expand:e-kernel:k-stride:s-idskip:b`` (the
ProxylessNAS form; OFA's MobileNetV3 LUTs add ``-se:0|1-hs:0|1`` and give the expanded
width in ``expand:``: :mod:`surrogate.lut_ofa`). Entries and operator-table rows
correspond as follows:

* ``expanded_conv`` <-> an ``mbconv`` row (groups 1, no pooled skip; export: no SE);
* ``Conv`` (the 3x3 first conv) <-> the ``stem`` row;
* ``Conv_1`` (feature-mix / final-expand 1x1 conv) + ``AvgPool2D`` (if present) +
  ``Conv_2`` (OFA MobileNetV3's feature mix, if present) + ``Logits`` <-> one ``head``
  row (measured together here). Export writes the whole head time on ``Conv_1`` and a
  zero ``Logits``; a ``Logits`` with no ``Conv_1`` before it is a head without a 1x1
  conv (``head_ch`` 0).

The activation comes from the file: an MBv3 key's ``hs:`` field (stem and head
h-swish), else its ``# act: NAME`` comment (export writes one, and
``# expand_divisor: N``), else the ProxylessNAS format's ReLU6. :func:`import_lut`
checks it against the space or network it is imported for, warns naming both when
they differ, and reports coverage.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from space.arch import ACTS, LayerConfig, conv_out

from .lut_ofa import MBV3_ACT, PROXYLESS_ACT, lut_family, mbconv_config
from .tables import LEGACY_CLOCK, LEGACY_ESTIMATOR, TableError, op_row_key

__all__ = ["LutImport", "convert_file", "export_lut", "import_lut", "lut_act", "lut_key", "lut_target",
           "lut_to_rows", "parse_lut"]

_DIMS = r"(\d+)x(\d+)x(\d+)"
_CONV_KEY = re.compile(rf"^(Conv|Conv_1)-input:{_DIMS}-output:{_DIMS}$")
_POOL_KEY = re.compile(rf"^AvgPool2D-input:{_DIMS}-output:1x1x(\d+)$")
_LOGITS_KEY = re.compile(rf"^Logits-input:{_DIMS}-output:(\d+)$")
_MIX_KEY = re.compile(r"^Conv_2-input:1x1x(\d+)-output:1x1x(\d+)$")
_FLOW = re.compile(r"^(\S+):\s*\{(.*)\}\s*$")  # PyYAML's flow style: KEY: {count: 1, mean: 2, var: 3}
_ANY_LUT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-input:\d+x\d+x\d+(-[A-Za-z_]+:[0-9x.]+)*$")
_ACT_COMMENT = re.compile(r"^#\s*act:\s*([A-Za-z0-9_]+)\s*$")
_DIV_COMMENT = re.compile(r"^#\s*expand_divisor:\s*(\d+)\s*$")


def lut_key(row: Mapping) -> str | None:
    """OFA key of an ``mbconv`` or ``stem`` row (None for rows the format cannot express).

    Head rows become two entries; see :func:`export_lut`.
    """
    h, w, cin, cout = int(row["h"]), int(row["w"]), int(row["in_ch"]), int(row["out_ch"])
    k, s = int(row["kernel"]), int(row["stride"])
    if row["op"] == "stem":
        if k != 3:
            return None
        return f"Conv-input:{h}x{w}x{cin}-output:{conv_out(h, 3, s)}x{conv_out(w, 3, s)}x{cout}"
    if row["op"] != "mbconv" or float(row["se"]) != 0.0 or int(row["groups"]) != 1 \
            or row["residual"] == "pool":
        return None
    return (f"expanded_conv-input:{h}x{w}x{cin}"
            f"-output:{conv_out(h, k, s)}x{conv_out(w, k, s)}x{cout}-expand:{row['expand']}"
            f"-kernel:{k}-stride:{s}-idskip:{1 if row['residual'] == 'add' else 0}")


def _entry(mean: float, std: float, n: int) -> str:
    return f"  count: {n}\n  mean: {mean!r}\n  var: {std * std!r}\n"


def export_lut(rows: Iterable[Mapping]) -> tuple[str, int]:
    """Rows -> OFA LUT text; returns (text, number of rows it could not express).

    All rows must share one activation (written as a ``# act:`` comment).
    """
    rows = list(rows)
    acts = sorted({str(r["act"]) for r in rows})
    if len(acts) > 1:
        raise ValueError(f"rows hold activations {', '.join(acts)}; a LUT records one: "
                         f"export one activation at a time")
    divs = sorted({int(r.get("expand_divisor", 1)) for r in rows if r["op"] == "mbconv"})
    if len(divs) > 1:
        raise ValueError(f"mbconv rows hold expand divisors {divs}; a LUT records one")
    lines = [f"# act: {acts[0]}\n"] if acts else []
    if divs and divs[0] != 1:
        lines.append(f"# expand_divisor: {divs[0]}\n")
    skipped, logits = 0, {}
    for r in rows:
        n, mean, std = int(r["n_runs"]), float(r["median_ms"]), float(r["std_ms"])
        if r["op"] == "head":
            h, w, cin, hc = int(r["h"]), int(r["w"]), int(r["in_ch"]), int(r["out_ch"])
            if hc:
                lines.append(f"Conv_1-input:{h}x{w}x{cin}-output:{h}x{w}x{hc}:\n"
                             + _entry(mean, std, n))
                logits.setdefault(f"Logits-input:{h}x{w}x{hc}-output:{r['num_classes']}", n)
            else:
                lines.append(f"Logits-input:{h}x{w}x{cin}-output:{r['num_classes']}:\n"
                             + _entry(mean, std, n))
            continue
        k = lut_key(r)
        if k is None:
            skipped += 1
            continue
        lines.append(f"{k}:\n" + _entry(mean, std, n))
    own = {ln.partition(":\n")[0] for ln in lines}
    for k, n in logits.items():
        if k not in own:  # a Logits entry that carries no time of its own: Conv_1 holds it
            lines.append(f"{k}:\n" + _entry(0.0, 0.0, n))
    return "".join(lines), skipped


def parse_lut(text: str, source: str = "<lut>") -> dict[str, dict]:
    """OFA LUT text (the YAML subset those files use: block or PyYAML's flow style per
    entry) -> ``{key: {count, mean, var}}``."""
    out: dict[str, dict] = {}
    cur = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [line.strip()]
        if not line.startswith((" ", "\t")):
            flow = _FLOW.match(line.strip())
            key = flow.group(1) if flow else line.rstrip().rstrip(":").strip()
            if not _ANY_LUT_KEY.match(key):
                raise TableError(f"{source}:{lineno}: not a LUT key such as "
                                 f"'expanded_conv-input:HxWxC-output:...': {key[:80]!r}")
            if key in out:
                raise TableError(f"{source}:{lineno}: duplicate LUT key {key!r}")
            cur = out.setdefault(key, {})
            if not flow:
                continue
            fields = flow.group(2).split(",")
        if cur is None:
            raise TableError(f"{source}:{lineno}: value before any key")
        for field_ in fields:
            name, _, val = field_.strip().partition(":")
            if name not in ("count", "mean", "var"):
                raise TableError(f"{source}:{lineno}: unknown LUT field {name!r} (count, mean, var)")
            try:
                cur[name] = int(val) if name == "count" else float(val)
            except ValueError:
                raise TableError(f"{source}:{lineno}: {name} must be a number, "
                                 f"got {val.strip()!r}") from None
    for k, v in out.items():
        if set(v) != {"count", "mean", "var"}:
            raise TableError(f"{source}: entry {k!r} lacks {sorted({'count', 'mean', 'var'} - set(v))}")
    return out


def lut_act(text: str) -> str | None:
    """The activation a ``# act: NAME`` comment records (None without one)."""
    for line in text.splitlines():
        m = _ACT_COMMENT.match(line.strip())
        if m:
            if m.group(1) not in ACTS:
                raise TableError(f"LUT act comment names {m.group(1)!r}; expected one of "
                                 f"{', '.join(ACTS)}")
            return m.group(1)
    return None


def _row(lc: LayerConfig, mean: float, var: float, count: int) -> dict:
    std = math.sqrt(max(var, 0.0))
    return {**op_row_key(lc), "median_ms": mean, "wall_ms": mean, "cpu_ms": math.nan,
            "clock": LEGACY_CLOCK, "estimator": LEGACY_ESTIMATOR, "clock_diverged": False,
            "mean_ms": mean, "std_ms": std,
            "p10_ms": math.nan, "p90_ms": math.nan, "iqr_ms": math.nan,
            "cv": std / mean if mean > 0 else math.nan, "rel_spread": math.nan,
            "n_runs": count, "n_rounds": 1, "remeasured": False,
            "ref_ms": math.nan, "measured_at": "imported"}


def _configs(lut: Mapping[str, Mapping], act: str | None = None,
             divisor: int = 1) -> tuple[list, Counter]:
    """``[(LayerConfig, mean, var, count, entry keys)]`` and the entries left out, by name.

    ``act``: the activation of entries whose key records none (None: the format's, ReLU6
    for ProxylessNAS keys, h-swish for the stem and head of an OFA MobileNetV3 LUT).
    """
    act = act or (MBV3_ACT if lut_family(lut) == "mbv3" else PROXYLESS_ACT)
    out, used, left = [], set(), Counter()
    common = dict(se=0.0, groups=1, act=act)
    heads: dict[tuple[int, int, int], list[str]] = {}
    for key in lut:
        m = _LOGITS_KEY.match(key)
        if m:
            h, w, c, _ = (int(x) for x in m.groups())
            heads.setdefault((h, w, c) if h > 1 else (0, 0, c), []).append(key)
    pools = {(int(m.group(1)), int(m.group(3))): k for k in lut if (m := _POOL_KEY.match(k))}
    mixes: dict[int, list[tuple[str, int]]] = {}
    for key in lut:
        if m := _MIX_KEY.match(key):
            mixes.setdefault(int(m.group(1)), []).append((key, int(m.group(2))))
    for key, v in lut.items():
        parts = [key]
        if key.startswith("expanded_conv-"):
            try:
                lc = mbconv_config(key, act, divisor)
            except ValueError as exc:
                left[f"expanded_conv ({exc})"] += 1
                continue
        elif (m := _CONV_KEY.match(key)) and m.group(1) == "Conv":
            h, w, cin, oh, _, cout = (int(x) for x in m.groups()[1:])
            s = 2 if oh < h else 1
            if conv_out(h, 3, s) != oh:
                left["Conv"] += 1
                continue
            lc = LayerConfig(op="stem", h=h, w=w, in_ch=cin, out_ch=cout, kernel=3, stride=s,
                             expand=1, skip="none", **common)
        elif m := _CONV_KEY.match(key):  # Conv_1: the head conv, + pool (+ Conv_2 mix) + logits
            h, w, cin, _, _, hc = (int(x) for x in m.groups()[1:])
            lk, mk, mix = (heads.get((h, w, hc)) or [None])[0], None, 0
            if lk is None:  # logits on the pooled vector, directly or after the mix conv
                lk = (heads.get((0, 0, hc)) or [None])[0]
                if lk is None:
                    mk, mix, lk = next(((k2, c2, heads[(0, 0, c2)][0]) for k2, c2 in mixes.get(hc, [])
                                        if (0, 0, c2) in heads), (None, 0, None))
                parts.append(pools.get((h, hc)))
            if lk is None:
                left["Conv_1 without Logits"] += 1
                continue
            parts = [x for x in parts + [mk, lk] if x]
            used.update(parts)
            mean = sum(float(lut[x]["mean"]) for x in parts)
            v = {"mean": mean, "var": sum(float(lut[x]["var"]) for x in parts), "count": v["count"]}
            lc = LayerConfig(op="head", h=h, w=w, in_ch=cin, out_ch=hc, kernel=1, stride=1,
                             expand=1, skip="none", num_classes=int(lk.rsplit(":", 1)[1]),
                             mix_ch=mix, mix_norm="none" if mix else "bias", **common)
        else:
            if not (_LOGITS_KEY.match(key) or _POOL_KEY.match(key) or _MIX_KEY.match(key)):
                left[key.split("-", 1)[0]] += 1
            continue
        out.append((lc, float(v["mean"]), float(v["var"]), int(v["count"]), parts))
    for key, v in lut.items():  # a Logits on a feature map that no Conv_1 feeds: head_ch 0
        m = _LOGITS_KEY.match(key)
        if m and key not in used:
            h, w, c, ncls = (int(x) for x in m.groups())
            if h > 1:
                out.append((LayerConfig(op="head", h=h, w=w, in_ch=c, out_ch=0, kernel=1, stride=1,
                                        expand=1, skip="none", num_classes=ncls, **common),
                            float(v["mean"]), float(v["var"]), int(v["count"]), [key]))
                continue
        if (m or _POOL_KEY.match(key) or _MIX_KEY.match(key)) and key not in used:
            left[key.split("-", 1)[0]] += 1
    return out, left


def lut_to_rows(lut: Mapping[str, Mapping], act: str | None = None, divisor: int = 1) -> list[dict]:
    """LUT entries -> operator-table rows (mbconv, stem, head); ``act`` for the entries
    whose key records no activation (None: the format's; see :func:`import_lut`)."""
    if act is not None and act not in ACTS:
        raise ValueError(f"act must be one of {', '.join(ACTS)}; got {act!r}")
    return [_row(*c[:4]) for c in _configs(lut, act, divisor)[0]]


_ACT_SOURCES = {"given": "given", "comment": "its '# act:' comment",
                "format": "ProxylessNAS keys: ReLU6",
                "keys": "OFA MobileNetV3 keys: hs:1 h-swish, hs:0 ReLU; stem and head h-swish"}


@dataclass
class LutImport:
    """What :func:`import_lut` made of a LUT: rows, their activations, coverage."""

    rows: list[dict]
    act: str         # the rows' activation ("hswish+relu" when several)
    act_source: str  # "given", "comment", "format" (ProxylessNAS keys) or "keys" (OFA MBv3 keys)
    left_out: dict[str, int]
    target: str | None = None
    target_ops: int = 0
    matched_ops: int = 0       # target operators the LUT covers
    entries: int = 0           # LUT entries
    matched_entries: int = 0   # LUT entries that make up the covered operators
    target_acts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def coverage(self) -> str:
        """``covers M of N operators of T (E of L LUT entries map to them)``."""
        return (f"covers {self.matched_ops} of {self.target_ops} operators of {self.target} "
                f"({self.matched_entries} of {self.entries} LUT entries map to them)")

    def summary(self) -> str:
        """One line: rows, activation, coverage, what was left out."""
        left = ", ".join(f"{n} {k}" for k, n in sorted(self.left_out.items())) or "none"
        cov = f"; {self.coverage()}" if self.target else ""
        return (f"{len(self.rows)} rows, act {self.act} ({_ACT_SOURCES[self.act_source]}){cov}; "
                f"left out: {left}")


def import_lut(text: str, *, act: str | None = None, target: Sequence[LayerConfig] | None = None,
               target_name: str = "the target", source: str = "<lut>") -> LutImport:
    """Parse a LUT and turn it into operator-table rows, checked against ``target``.

    The activation is the file's: an OFA MobileNetV3 key's ``hs:`` field (its stem and
    head h-swish), else the ``# act:`` comment, else ReLU6 (the ProxylessNAS format);
    ``act`` overrides it for the entries whose key records none. ``target`` (e.g.
    ``space.operator_configs()`` or ``arch.ops()``) only sets the expanded-width divisor
    when the file records none, and is what coverage counts. When the rows hold an
    activation no target operator has, a warning names both and the coverage; so does a
    coverage of 0, with the activation that would match.
    """
    lut = parse_lut(text, source)
    if act is not None and act not in ACTS:
        raise ValueError(f"act must be one of {', '.join(ACTS)}; got {act!r}")
    ops = [lc for lc in (target or []) if not lc.is_identity]
    keys = {lc.key() for lc in ops}
    divs = Counter(lc.expand_divisor for lc in ops if lc.op == "mbconv")
    recorded = [int(m.group(1)) for ln in text.splitlines() if (m := _DIV_COMMENT.match(ln.strip()))]
    div = recorded[0] if recorded else (divs.most_common(1)[0][0] if divs else 1)
    src = "given" if act else "comment"
    act = act or lut_act(text)
    if act is None:
        src = "keys" if lut_family(lut) == "mbv3" else "format"
    configs, left = _configs(lut, act, div)
    rows = [_row(*c[:4]) for c in configs]
    acts = sorted({r["act"] for r in rows}) or [act or PROXYLESS_ACT]
    res = LutImport(rows=rows, act="+".join(acts), act_source=src, left_out=dict(left),
                    target=target_name if ops else None, target_ops=len(keys), entries=len(lut))
    if ops:
        hit = [c for c in configs if c[0].key() in keys]
        res.matched_ops = len({c[0].key() for c in hit})
        res.matched_entries = len({k for c in hit for k in c[4]})
        res.target_acts = sorted({lc.act for lc in ops})
        foreign = [a for a in acts if a not in res.target_acts]
        if foreign or not res.matched_ops:
            what = (f"the LUT's activation {'+'.join(foreign)} ({_ACT_SOURCES[src]}) is not that "
                    f"of {target_name} ({'+'.join(res.target_acts)}): it " if foreign else "the LUT ")
            hint = ""
            if not res.matched_ops:
                others = {a: len(keys & {r["op_key"] for r in lut_to_rows(lut, a, div)})
                          for a in ACTS if a not in acts}
                best = max(others, key=others.get)
                hint = (f"; with act {best}, {others[best]} match" if others[best]
                        else "; no activation makes any match (other shapes or widths)")
            res.warnings.append(f"{source}: {what}{res.coverage()} under act {res.act}{hint}")
    for w in res.warnings:
        warnings.warn(w, stacklevel=2)
    return res


def _ops_space(table: str | os.PathLike | None) -> str:
    """The space an ``<space>_ops.csv`` path names, else the file name ('' for none)."""
    from .paths import parse_table_name

    name = Path(table or "").name
    try:
        _, space, kind, tag = parse_table_name(name)
    except ValueError:
        return name
    return space if kind == "ops" and tag is None else name


def lut_target(space: str | None = None, arch: str | None = None,
               table: str | os.PathLike | None = None) -> tuple[list[LayerConfig] | None, str]:
    """Operators to check a LUT import against, and their name.

    ``arch`` (a name or architecture string), else ``space``, else the space an
    ``<space>_ops.csv`` ``table`` path names (None when it names no space).
    """
    from space import get_space, resolve_arch, space_names

    if arch:
        return list(resolve_arch(arch).ops()), f"network {arch}"
    name = space or _ops_space(table)
    if name in space_names():
        return get_space(name).operator_configs(), f"space {name}"
    if space:
        raise ValueError(f"space {space!r} is not a space; expected one of {', '.join(space_names())}")
    return None, name


def _sniff(path: Path) -> str:
    """What a file holds, from its content: ``ops`` (an operator table), ``models`` (a network
    table) or ``lut``; ValueError for an empty file or anything else."""
    from .tables import MODELS_COLUMNS, OPS_COLUMNS, Table

    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path}: empty file; expected a <space>_ops.csv table or a LUT to convert")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; expected a <space>_ops.csv table or a LUT") from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for kind, cols in (("ops", OPS_COLUMNS), ("models", MODELS_COLUMNS)):
        legacy = Table(path, cols, "").legacy_columns
        if first in (",".join(cols), ",".join(legacy)):
            return kind
    if first.startswith("#") or _ANY_LUT_KEY.match(first.rstrip(":").strip()):
        return "lut"
    raise ValueError(f"{path}: neither an operator table (its first line is not the table header) "
                     f"nor a LUT (its first line is not a LUT key such as "
                     f"'expanded_conv-input:HxWxC-output:...'): {first[:60]!r}")


def convert_file(src: str | os.PathLike, dst: str | os.PathLike, *, act: str | None = None,
                 space: str | None = None, arch: str | None = None) -> tuple[str, list[str]]:
    """``<space>_ops.csv`` -> LUT file, or LUT file -> new ``<space>_ops.csv`` (``mnas table convert``).

    The direction comes from the source's content (the table header, or LUT entries), not
    its name. Returns (a one-line report, warnings). Refused, writing nothing: a destination
    that is the source (under any path), an empty source, a LUT export to a file named like
    a table (``<space>_ops.csv``), an import onto an existing file. The destination folder
    must exist; see :func:`import_lut` for ``act``, :func:`lut_target` for ``space`` / ``arch``.
    """
    from .atomic import atomic_path, write_atomic
    from .tables import Table, TableError, table_kind

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"destination folder {dst.parent} does not exist; create it first")
    if os.path.realpath(src) == os.path.realpath(dst) or (dst.exists() and os.path.samefile(src, dst)):
        raise ValueError(f"destination {dst} is the source {src}; give another file to write")
    kind = _sniff(src)
    if kind == "models":
        raise ValueError(f"{src}: a network table; only operator tables (<space>_ops.csv) "
                         f"convert to the LUT format")
    if kind == "ops":
        try:
            table_kind(dst)
        except TableError:
            pass
        else:
            raise ValueError(f"destination {dst} is named like a latency table, but {src} is an "
                             f"operator table, which converts to a LUT: name it e.g. "
                             f"{dst.with_suffix('.yaml').name}")
        if dst.exists() and _sniff_or_none(dst) != "lut":
            raise ValueError(f"destination {dst} exists and is not a LUT; refusing to overwrite it")
        text, skipped = export_lut(Table.ops(src).read())
        write_atomic(dst, text)
        return (f"wrote {dst}: {text.count('count:')} entries; {skipped} rows not expressible "
                f"(SE, grouped, irf/conv/skip, pooled skip, non-3x3 stem)"), []
    if _ops_space(dst) == dst.name:
        raise ValueError(f"destination {dst} must be named <space>_ops.csv when importing a LUT")
    if dst.exists():
        raise ValueError(f"destination {dst} exists; refusing to overwrite it")
    target, name = lut_target(space=space, arch=arch, table=dst)
    with warnings.catch_warnings():  # returned, for the caller to show once
        warnings.simplefilter("ignore")
        res = import_lut(src.read_text(), act=act, target=target, target_name=name, source=str(src))
    if not res.rows:
        raise ValueError(f"{src}: no LUT entry maps to an operator-table row (left out: "
                         f"{', '.join(f'{n} {k}' for k, n in sorted(res.left_out.items())) or 'none'})")
    from .tablefile import _csv_line, _fmt

    cols = Table.ops(dst).columns
    with atomic_path(dst) as tmp:  # all or nothing, and only what reads back as a table
        tmp.write_bytes(b"".join([_csv_line(cols)]
                                 + [_csv_line([_fmt(r[c]) for c in cols]) for r in res.rows]))
        try:
            Table.ops(tmp).read()
        except TableError as exc:
            raise TableError(f"{src}: its rows would not make a valid table: "
                             f"{str(exc).replace(str(tmp), str(dst))}") from None
    return f"wrote {dst} from {src}: {res.summary()}", res.warnings


def _sniff_or_none(path: Path) -> str | None:
    try:
        return _sniff(path)
    except ValueError:
        return None
