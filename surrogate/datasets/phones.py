"""Published end-to-end phone latencies and the mobile-ml-benchmark, as one table.

:func:`load_published_phones` reads two files where the user keeps them (never copied):

- ``reference/published_latency.csv``: latencies of MBConv-family (and some other)
  networks on Pixel 1/2/3 and Galaxy S8, quoted from the papers and READMEs named in
  each row (MnasNet, MobileNetV2/V3, ProxylessNAS, FBNet, Once-for-All, TF-slim,
  TFLite hosted models). No data license: facts quoted from the cited works, cite the
  row's ``source_detail``. The same network gets different numbers from different
  sources (TFLite builds changed): never mix sources when calibrating. Rows whose note
  says ``UNCERTAIN`` or ``DERIVED`` are weaker evidence (``weak``); a flag may concern
  a figure other than the latency (MnasNet-B1's MAdds, AmoebaNet-A's params), ``notes``
  says which.
- ``benchmarks/mobile_ml_benchmark/tflite_cnn_e2e.csv`` (Li, Paolieri, Golubchik,
  EdgeSys 2024; github.com/qed-usc/mobile-ml-benchmark@40ba833; MIT): TFLite 2.10, 224x224,
  batch 1, on a Pixel 4 and a Galaxy S10, per core set and dtype, in microseconds
  (converted to ms here); networks named as in ``pytorchcv``.

One row per (network, device, cores, dtype, source). ``arch`` is the network's
canonical architecture string (``str(space.resolve_arch(arch_name))``) where the
registry (:mod:`space.reference`) builds it, else None with ``arch_reason``.
Paths: explicit files, else ``shared`` (the ``../shared`` folder), else
``$MNAS_REFERENCE_DIR`` (the ``reference`` folder) and ``$MNAS_BENCHMARKS_DIR``
(:func:`~surrogate.datasets.base.benchmarks_dir`), else ``../shared`` beside the checkout.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from space.reference import ALIASES, REFERENCE, resolve_arch, variant_name

from ..frames import require_pandas
from .base import CHECKOUT_BENCHMARKS, benchmark_file

ENV_REFERENCE = "MNAS_REFERENCE_DIR"
#: ``../shared/reference`` beside the checkout
CHECKOUT_REFERENCE = CHECKOUT_BENCHMARKS.parent / "reference"
PUBLISHED = "published_latency.csv"
BENCH = "mobile_ml_benchmark/tflite_cnn_e2e.csv"
BENCH_ID = "mobile_ml_benchmark"
BENCH_DETAIL = ("github.com/qed-usc/mobile-ml-benchmark@40ba833 dataset/tflite_cnn_e2e.csv "
                "(Li, Paolieri, Golubchik, EdgeSys 2024)")
BENCH_RUNTIME, BENCH_VERSION, BENCH_RESOLUTION = "TFLite", "2.10", 224
BENCH_DEVICES = {"pixel4": "Google Pixel 4 (Snapdragon 855)",
                 "s10": "Samsung Galaxy S10 (Exynos 9820)"}
LICENSES = {BENCH_ID: "MIT",
            "published_latency": "none: figures quoted from the works named in source_detail"}
LICENSE = LICENSES[BENCH_ID]  # the benchmark's; the published rows cite their sources
COLUMNS = ("network", "arch", "arch_name", "arch_reason", "arch_note", "device", "cores",
           "dtype", "runtime", "version", "latency_ms", "std_ms", "source", "notes", "weak",
           "resolution", "device_detail", "source_detail", "madds_m", "params_m", "top1")
KEY = ("network", "device", "cores", "dtype", "source")

NOT_MBCONV = "not an MBConv-family network"
NOT_IN_REGISTRY = "not in the registry"
#: the benchmark's MBConv family (its README); ghostnet is the one the registry does not build
BENCH_FAMILY = ("mnasnet", "mobilenetv2", "mobilenetv3", "proxylessnas", "spnasnet", "fbnet",
                "efficientnet_edge", "ghostnet")
BENCH_NOT_BUILT = {"ghostnet": "Ghost modules are outside the MBConv grammar"}

# source string prefix -> (stable id, runtime, dtype when the row does not say)
_SOURCES = (
    ("MnasNet paper", "mnasnet_paper", "TFLite", "fp32"),
    ("MobileNetV2 paper", "mobilenetv2_paper", "TFLite", "fp32"),
    ("MobileNetV3 paper", "mobilenetv3_paper", "TFLite", None),
    ("tensorflow/models@", "tfslim_mobilenet_readme", "TFLite", "fp32"),
    ("tensorflow/tensorflow@", "tflite_hosted_models", "TFLite", "fp32"),
    ("mit-han-lab/proxylessnas@6f22eda logs", "proxylessnas_log", "TFLite", "fp32"),
    ("mit-han-lab/proxylessnas@", "proxylessnas_readme", "TFLite", "fp32"),
    ("FBNet paper", "fbnet_paper", None, None),
    ("facebookresearch/mobile-vision@", "mobile_vision_readme", "Caffe2", None),
    ("Once-for-All paper", "ofa_paper", "TFLite", "fp32"),
    ("mit-han-lab/once-for-all@", "ofa_readme", "TFLite", "fp32"),
)

_V1 = ("the v1-paper MnasNet (317M MAdds, 74.0%): its layers are not published with it, and "
       "that it is mnasnet-b1 (314.4M) is not confirmed")
_OFA58 = "pixel1_lat-58ms_top1-76.9_finetune-75"
# (pattern, registry base name or None, reason when None / note when mapped); first match wins
_RULES: tuple[tuple[str, str | None, str], ...] = (
    (r"SSDLite", None, "a detector (SSDLite on COCO at 320x320), not a classifier"),
    (r"^(MobileNetV1|NASNet|AmoebaNet|Cell-based|ShuffleNetV2|CondenseNet)", None, NOT_MBCONV),
    (r"^MBConv(?P<e>[36]) \(k(?P<k>[35])x[35]\) only variant of A1", "mnasnet-a1-e{e}k{k}",
     "Table 6 gives only the op; the registry keeps A1's first stage and SE choices"),
    (r"^MnasNet search space \+ multi-obj reward \(A1\)", "mnasnet-a1", ""),
    (r"^MnasNet-A1 \(0\.35x\)", "mnasnet-a1-0.35", ""),
    (r"^MnasNet-A1$", "mnasnet-a1", ""),
    (r"^MnasNet-B1\b", "mnasnet-b1", ""),
    (r"^MnasNet-A[23]\b", None, NOT_IN_REGISTRY + ": the paper gives no layers for it"),
    (r"^MnasNet-search2\b", "mnasnet-small",
     "the tensorflow/tpu mnasnet-small release (2.0M params, 68M MAdds, ~66%), as the row notes"),
    (r"^(MnasNet-search1\b|MnasNet-small \(Mnas-small\))", None,
     NOT_IN_REGISTRY + ": the paper's other 22 ms search result (1.9M params, 65M MAdds, "
     "64.9%); its layers are unpublished and the registry's mnasnet-small is the 68M release"),
    (r"^MnasNet( \(|_)", None, NOT_IN_REGISTRY + ": " + _V1),
    (r"^ProxylessNAS-mobile_14\b", "proxylessnas-mobile14", ""),
    (r"^ProxylessNAS-mobile\b", "proxylessnas-mobile", ""),
    (r"^FBNet-C(\s|$)", "fbnet-c",
     "the released FBNet-C (pytorchcv fbnet_cb, 385M MAdds; the paper quotes 375M)"),
    (r"^FBNet", None, NOT_IN_REGISTRY + ": of the FBNets only FBNet-C is built"),
    (r"^OFA pixel1_lat@(?P<ms>\d+)ms", "pixel1_lat-{ms}ms", ""),
    (r"^OFA w/ PS", _OFA58, "OFA Table 1's network is the 58 ms Pixel1 subnet (230M MAdds); "
     "#25/#75 are its fine-tuning epochs"),
    (r"^OFA w/o PS", None, NOT_IN_REGISTRY + ": a subnet trained without progressive "
     "shrinking (235M MAdds) whose layers are not published"),
    (r"^AutoSlim", None, NOT_IN_REGISTRY + ": AutoSlim's per-layer MobileNetV2 widths are "
     "not built"),
)
_MBV2 = re.compile(r"^MobileNetV2\s*(?:dm=)?\(?(?P<w>\d*\.?\d+)x?\)?")
_MBV3 = re.compile(r"^MobileNetV3-(?P<v>Large|Small)(?P<min>-minimalistic)?"
                   r"(?:\s+(?:dm=)?(?P<w>\d*\.?\d+))?")


def reference_dir(path: str | os.PathLike | None = None) -> Path:
    """The reference folder: ``path``, ``$MNAS_REFERENCE_DIR`` or ``../shared/reference``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(ENV_REFERENCE)
    return Path(env).expanduser() if env else CHECKOUT_REFERENCE


def _files(shared, published_csv, benchmark_csv) -> tuple[Path, Path]:
    root = Path(shared).expanduser() if shared is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"shared folder {root} does not exist")
    if published_csv is not None:
        pub = Path(published_csv).expanduser()
        pub = pub / PUBLISHED if pub.is_dir() else pub
    else:
        pub = reference_dir(root / "reference" if root is not None else None) / PUBLISHED
    if not pub.is_file():
        raise FileNotFoundError(f"published latencies: no file {pub}; pass published_csv= or "
                                f"shared=, or set ${ENV_REFERENCE}")
    if benchmark_csv is not None:
        p = Path(benchmark_csv).expanduser()
        if not (p.is_file() or p.is_dir()):
            raise FileNotFoundError(f"mobile-ml-benchmark: no file {p}")
        bench = benchmark_file(p, BENCH, "mobile-ml-benchmark")
    else:
        bench = benchmark_file(root / "benchmarks" if root is not None else None, BENCH,
                               "mobile-ml-benchmark")
    return pub, bench


# -- names -> architectures ------------------------------------------------------------
def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _at(base: str, resolution: int | None) -> str:
    """``base`` at ``resolution``: a registered ``base-<res>`` name, else a variant."""
    if resolution is None or REFERENCE[base].resolution == resolution:
        return base
    if f"{base}-{resolution}" in REFERENCE:
        return f"{base}-{resolution}"
    return variant_name(base, None, resolution)


def _width_name(width: float, choices: dict[float, str], resolution: int | None):
    if width in choices:
        return _at(choices[width], resolution)
    return variant_name(choices[1.0], width, resolution)


def published_arch(model: str, resolution: int | None = None) -> tuple[str | None, str]:
    """``(registry or variant name, note)`` of a network named in published_latency.csv,
    or ``(None, reason)``. ``resolution``: the row's input size, when it gives one."""
    m = _MBV2.match(model)
    if m and "SSDLite" not in model:
        w = float(m["w"])
        choices = {float(k.split("-")[1]): k for k in REFERENCE
                   if re.fullmatch(r"mobilenetv2-[\d.]+", k)}
        return _width_name(w, choices, resolution), \
            "the TF-slim MobileNetV2 layers (tensorflow/models)"
    m = _MBV3.match(model)
    if m:
        v = m["v"].lower()
        if m["min"]:
            return _at(f"mobilenetv3-{v}-minimalistic", resolution), ""
        choices = {1.0: f"mobilenetv3-{v}-1.0", 0.75: f"mobilenetv3-{v}-0.75"}
        return _width_name(float(m["w"] or 1.0), choices, resolution), \
            "the TF-slim MobileNetV3 layers (tensorflow/models)"
    for pattern, base, text in _RULES:
        m = re.search(pattern, model)
        if not m:
            continue
        if base is None:
            return None, text
        name = base.format(**m.groupdict())
        if name not in REFERENCE:  # an OFA subnet named by its latency target
            hits = [k for k in REFERENCE if k.startswith(name + "_")]
            if len(hits) != 1:
                return None, NOT_IN_REGISTRY
            name = hits[0]
        return _at(name, resolution), text
    return None, NOT_IN_REGISTRY


def benchmark_arch(model: str) -> tuple[str | None, str]:
    """``(registry name, '')`` of a mobile-ml-benchmark (pytorchcv) network, or ``(None, reason)``."""
    if model in ALIASES:
        return ALIASES[model], ""
    if model in REFERENCE:
        return model, ""
    if model in BENCH_NOT_BUILT:
        return None, BENCH_NOT_BUILT[model]
    if model.startswith(BENCH_FAMILY):
        return None, NOT_IN_REGISTRY
    return None, NOT_MBCONV


# -- rows ------------------------------------------------------------------------------
def _source(text: str) -> tuple[str, str | None, str | None]:
    for prefix, sid, runtime, dtype in _SOURCES:
        if text.startswith(prefix):
            return sid, runtime, dtype
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "unknown", None, None


def _device(text: str) -> tuple[str, str | None]:
    m = re.search(r"Pixel (\d)", text)
    dev = f"pixel{m[1]}" if m else ("s8" if "Galaxy S8" in text else "unnamed")
    if re.search(r"not named", text):  # the ProxylessNAS log: the phone is only presumed
        dev = "unnamed"
    if re.search(r"single[- ]thread|single large|large core|big (CPU )?core|BIG core", text):
        return dev, "1large"
    return dev, ("1thread" if re.search(r"\b1 thread\b", text) else None)


def _dtype(text: str, default: str | None) -> str | None:
    if re.search(r"int8|8-bit|quantized|QNNPACK", text):
        return "int8"
    if re.search(r"fp32|float", text):
        return "fp32"
    return default


def _published_rows(path: Path) -> list[dict]:
    pd = require_pandas()
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    need = ("model", "device", "latency_ms", "source", "note", "input_res", "madds_m",
            "params_m", "top1")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not the published latency CSV (no column {missing[0]!r})")
    rows, cache = [], {}
    for i, r in enumerate(df.to_dict("records")):
        lat = _num(r["latency_ms"])
        if lat is None or lat <= 0:
            raise ValueError(f"{path}:{i + 2}: latency_ms {r['latency_ms']!r} is not a positive number")
        res = _num(r["input_res"])
        res = int(res) if res else None
        sid, runtime, dtype = _source(r["source"])
        device, cores = _device(r["device"])
        text = f"{r['model']} {r['device']}"
        if re.search(r"Caffe2", text):
            runtime = "Caffe2"
        key = (r["model"], res)
        if key not in cache:
            name, why = published_arch(r["model"], res)
            cache[key] = (name, why)
        name, why = cache[key]
        rows.append({
            "network": r["model"], "arch_name": name, "arch_reason": None if name else why,
            "arch_note": (why or None) if name else None, "device": device, "cores": cores,
            "dtype": _dtype(text, dtype), "runtime": runtime, "version": None,
            "latency_ms": lat, "std_ms": math.nan, "source": sid, "notes": r["note"],
            "weak": tuple(dict.fromkeys(re.findall(r"\b(UNCERTAIN|DERIVED)\b", r["note"]))),
            "resolution": res, "device_detail": r["device"], "source_detail": r["source"],
            "madds_m": _num(r["madds_m"]), "params_m": _num(r["params_m"]),
            "top1": _num(r["top1"])})
    # a network the source lists at several input sizes under one name: name the size
    seen: dict[tuple, int] = {}
    for r in rows:
        k = tuple(r[c] for c in KEY)
        seen[k] = seen.get(k, 0) + 1
    for r in rows:
        if seen[tuple(r[c] for c in KEY)] > 1 and r["resolution"]:
            r["network"] = f"{r['network']} ({r['resolution']}x{r['resolution']})"
    return rows


def _benchmark_rows(path: Path) -> list[dict]:
    pd = require_pandas()
    df = pd.read_csv(path)
    if "model" not in df.columns or "FLOPS" not in df.columns:
        raise ValueError(f"{path}: not the mobile-ml-benchmark CSV (needs 'model' and 'FLOPS')")
    means = []
    for c in df.columns:
        if c in ("model", "FLOPS", "size"):
            continue
        parts = c.split("|")
        if len(parts) != 4 or parts[2] not in ("float", "quant") or parts[3] not in ("mean", "std"):
            raise ValueError(f"{path}: column {c!r} is not <device>|<cores>|<float|quant>|<mean|std>")
        if parts[3] == "mean":
            means.append((c, parts))
    rows = []
    for r in df.to_dict("records"):
        name, why = benchmark_arch(r["model"])
        flops = _num(r["FLOPS"])
        for c, (dev, cores, dt, _) in means:
            us = _num(r[c])
            if us is None:
                continue
            if us <= 0:
                raise ValueError(f"{path}: {r['model']} {c} = {r[c]!r} is not a positive time")
            sd = _num(r.get(f"{dev}|{cores}|{dt}|std"))
            rows.append({
                "network": r["model"], "arch_name": name, "arch_reason": None if name else why,
                "arch_note": None, "device": dev, "cores": cores,
                "dtype": "fp32" if dt == "float" else "int8", "runtime": BENCH_RUNTIME,
                "version": BENCH_VERSION, "latency_ms": us / 1000.0,
                "std_ms": sd / 1000.0 if sd is not None else math.nan, "source": BENCH_ID,
                "notes": "", "weak": (), "resolution": BENCH_RESOLUTION,
                "device_detail": BENCH_DEVICES.get(dev, dev), "source_detail": BENCH_DETAIL,
                "madds_m": flops / 2e6 if flops else None, "params_m": None, "top1": None})
    return rows


def load_published_phones(shared: str | os.PathLike | None = None, *,
                          published_csv: str | os.PathLike | None = None,
                          benchmark_csv: str | os.PathLike | None = None):
    """Every row of the published phone latencies and of the mobile-ml-benchmark, one DataFrame.

    Columns: ``network`` (the source's name; a size is appended where a source lists one
    name at several sizes), ``arch`` (canonical architecture string, or None),
    ``arch_name`` (registry or variant name, e.g. ``mobilenetv2-0.75-192``), ``arch_reason``
    (why no arch), ``arch_note`` (a caveat of a mapping), ``device`` (``pixel1`` ..
    ``pixel4``, ``s8``, ``s10``, ``unnamed``), ``cores`` (``1large`` = one big core, the
    benchmark's ``2med``/``gpu``/..., ``1thread``, None when unstated), ``dtype``
    (``fp32``/``int8``; as the row states, else its source's float TFLite models; None
    for the FBNet paper, which does not say), ``runtime``, ``version``, ``latency_ms``,
    ``std_ms`` (benchmark only), ``source`` (a stable id: ``mnasnet_paper``,
    ``mobilenetv3_paper``, ``tfslim_mobilenet_readme``, ..., ``mobile_ml_benchmark``),
    ``notes``, ``weak`` (tuple of the ``UNCERTAIN``/``DERIVED`` flags), ``resolution``,
    ``device_detail`` / ``source_detail`` (the raw text), ``madds_m`` (the benchmark's
    FLOPS / 2), ``params_m``, ``top1``. ``attrs``: ``licenses``, ``paths``.
    A missing file raises one FileNotFoundError naming it.
    """
    pd = require_pandas()
    pub, bench = _files(shared, published_csv, benchmark_csv)
    rows = _published_rows(pub) + _benchmark_rows(bench)
    archs: dict[str, object] = {}
    for r in rows:
        name = r["arch_name"]
        if name is not None and name not in archs:
            try:
                archs[name] = resolve_arch(name)
            except ValueError:
                archs[name] = None
        a = archs.get(name) if name is not None else None
        if name is not None and a is None:
            r.update(arch_name=None, arch_reason=f"{NOT_IN_REGISTRY} ({name} does not resolve)")
        r["arch"] = str(a) if a is not None else None
        if r["resolution"] is None and a is not None:
            r["resolution"] = a.resolution
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["resolution"] = df["resolution"].astype("Int64")
    for c in ("latency_ms", "std_ms", "madds_m", "params_m", "top1"):
        df[c] = df[c].astype("float64")
    df.attrs.update({"license": LICENSE, "licenses": dict(LICENSES),
                     "paths": {"published_latency": str(pub), BENCH_ID: str(bench)}})
    return df


def phones_coverage(df) -> dict[str, dict]:
    """Per source: ``rows``, ``with_arch`` and ``without`` ({network: reason}) of a
    :func:`load_published_phones` frame."""
    out: dict[str, dict] = {}
    for sid, g in df.groupby("source", sort=True):
        miss = g[g["arch"].isna()]
        out[sid] = {"rows": len(g), "with_arch": int(g["arch"].notna().sum()),
                    "without": dict(zip(miss["network"], miss["arch_reason"]))}
    return out
