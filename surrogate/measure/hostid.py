"""Host identity: which kind of machine this is (imports only :mod:`.pinning` from the package).

``host_identity()`` reads Linux's /proc and /sys (no torch, no subprocess) and
degrades to ``platform`` elsewhere. Its ``host_id`` hashes only what changes
latency (CPU model and revision, the ISA extensions XNNPACK dispatches on, cache
sizes), never the kernel, the date or the core count. :mod:`.host` matches tables
against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from .pinning import allowed_cpus

__all__ = ["X86_ISA", "ARM_ISA", "host_identity", "compute_host_id", "describe_host", "compare_hosts"]

#: x86 extensions XNNPACK (and ONNX Runtime's MLAS) pick kernels by (Linux flag names)
X86_ISA = ("sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "avx2", "avx512f",
           "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512vbmi", "avx512_vnni",
           "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_vnni_int8", "amx_tile", "amx_int8",
           "amx_bf16", "amx_fp16")
#: Arm extensions XNNPACK picks kernels by (``Features`` names)
ARM_ISA = ("neon", "asimd", "asimddp", "fphp", "asimdhp", "asimdfhm", "i8mm", "bf16", "sve",
           "sve2", "sme")
_ALIASES = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "avx512bf16": "avx512_bf16",
            "avx512fp16": "avx512_fp16"}
#: identity fields that define a host kind (compared; hashed into ``host_id``)
_X86_REV = ("family", "model", "stepping")
_ARM_REV = ("implementer", "part", "variant", "revision")

_AMD = {(23, 1): "Zen (Naples)", (23, 49): "Zen 2 (Rome)", (25, 1): "Zen 3 (Milan)",
        (25, 17): "Zen 4 (Genoa)", (25, 160): "Zen 4c (Bergamo)", (26, 2): "Zen 5 (Turin)",
        (26, 17): "Zen 5c (Turin dense)"}
_INTEL = {63: "Haswell-EP", 79: "Broadwell-EP", 85: "Skylake-SP/Cascade Lake",
          106: "Ice Lake-SP", 143: "Sapphire Rapids", 207: "Emerald Rapids",
          173: "Granite Rapids"}
_ARM_IMPL = {"0x41": "Arm", "0x61": "Apple", "0xc0": "Ampere", "0x51": "Qualcomm",
             "0x48": "HiSilicon"}
_ARM_PART = {"0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1",
             "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
             "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2",
             "0xd4f": "Neoverse-V2"}


# -- reading the machine ------------------------------------------------------------
def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        k, sep, v = line.partition(":")
        if sep:
            cur.setdefault(k.strip().lower(), v.strip())
    if cur:
        blocks.append(cur)
    return blocks


def _int(v: str | None) -> int | None:
    try:
        return int(v, 0) if v is not None else None
    except ValueError:
        return None


def _size_kib(text: str | None) -> int | None:
    """'32K' / '1M' / '65536' (bytes) -> KiB."""
    m = re.fullmatch(r"(\d+)\s*([KMG]?)B?", (text or "").strip(), re.IGNORECASE)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).upper()
    return n // 1024 if not unit else n * {"K": 1, "M": 1024, "G": 1024 ** 2}[unit]


def _caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, int]:
    out: dict[str, int] = {}
    for d in sorted(Path(root).glob("index*")):
        level, kind, size = _read(d / "level"), _read(d / "type"), _size_kib(_read(d / "size"))
        if level is None or size is None:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind or "", "")
        out[f"L{level}{suffix}"] = size
    return out


def _meminfo_mib() -> int | None:
    text = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) // 1024 if m else None


def _allowed() -> tuple[int | None, str | None]:
    n = len(allowed_cpus())
    m = re.search(r"^Cpus_allowed_list:\s*(\S+)", _read("/proc/self/status") or "", re.MULTILINE)
    return n, (m.group(1) if m else None)


def _gpus() -> list[str]:
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        m = re.search(r"^Model:\s*(.+)$", _read(info) or "", re.MULTILINE)
        if m:
            names.append(m.group(1).strip())
    return names


def host_identity(cpuinfo: str | None = None) -> dict[str, Any]:
    """This machine's identity: CPU model and revision, ISA flags, caches, memory, kernel.

    ``cpuinfo`` replaces /proc/cpuinfo (tests). Fields this platform cannot show
    are None; ``host_id`` is a 16-hex-digit sha256 of the latency-relevant ones.
    """
    text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
    blocks = _cpuinfo_blocks(text)
    first = blocks[0] if blocks else {}
    merged = {k: v for b in reversed(blocks) for k, v in b.items()}  # ARM: 'Hardware' trails
    machine = platform.machine()
    ident: dict[str, Any] = {"identity_version": 1, "machine": machine}
    raw_flags = (first.get("flags") or first.get("features") or "").split()
    flags = {_ALIASES.get(f, f) for f in raw_flags}
    if "vendor_id" in first or "flags" in first:
        checked = X86_ISA
        ident.update(arch="x86", vendor=first.get("vendor_id"),
                     family=_int(first.get("cpu family")), model=_int(first.get("model")),
                     stepping=_int(first.get("stepping")), microcode=first.get("microcode"))
    elif "cpu implementer" in first or "features" in first:
        checked = ARM_ISA
        impl, part = first.get("cpu implementer"), first.get("cpu part")
        ident.update(arch="arm", vendor=_ARM_IMPL.get((impl or "").lower(), impl),
                     implementer=impl, part=part, variant=first.get("cpu variant"),
                     revision=first.get("cpu revision"),
                     microcode=_read("/sys/devices/system/cpu/cpu0/regs/identification/midr_el1"))
        kinds = sorted({(b.get("cpu implementer"), b.get("cpu part")) for b in blocks
                        if "cpu part" in b}, key=str)
        if len(kinds) > 1:  # big.LITTLE: record every core kind
            ident["core_parts"] = [p for _, p in kinds]
    else:
        checked = ()
        ident.update(arch=None, vendor=None)
    name = first.get("model name") or merged.get("hardware") or merged.get("processor")
    if not name or name.isdigit():
        if ident.get("arch") == "arm":
            name = " ".join(x for x in (ident["vendor"], _ARM_PART.get((ident["part"] or "").lower(),
                                                                       ident["part"])) if x)
        else:
            name = platform.processor() or machine or None
    ident["model_name"] = name
    ident["microarchitecture"] = _microarch(ident)
    ident["isa"] = [f for f in checked if f in flags]
    ident["isa_checked"] = list(checked)
    ident["caches_kib"] = _caches()
    n_allowed, allowed_list = _allowed()
    hyp_type = _read("/sys/hypervisor/type")
    dmi = {k: _read(f"/sys/class/dmi/id/{k}") for k in ("sys_vendor", "product_name")}
    ident.update(
        cpu_count=os.cpu_count(), cpus_allowed=n_allowed, cpus_allowed_list=allowed_list,
        memory_total_mib=_meminfo_mib(), kernel=platform.release(), system=platform.system(),
        hypervisor=True if ("hypervisor" in flags or hyp_type) else (False if raw_flags else None),
        hypervisor_vendor=hyp_type or dmi["sys_vendor"], dmi_product=dmi["product_name"],
        gpus=_gpus(),
    )
    ident["host_id"] = compute_host_id(ident)
    return ident


def _microarch(ident: dict) -> str | None:
    if ident.get("arch") == "x86":
        if ident.get("vendor") == "AuthenticAMD":
            return _AMD.get((ident.get("family"), ident.get("model")))
        if ident.get("vendor") == "GenuineIntel" and ident.get("family") == 6:
            return _INTEL.get(ident.get("model"))
    if ident.get("arch") == "arm":
        return _ARM_PART.get((ident.get("part") or "").lower())
    return None


def _kind_fields(ident: dict) -> dict[str, Any]:
    """The fields that define a host kind (what ``host_id`` hashes)."""
    rev = _ARM_REV if ident.get("arch") == "arm" else _X86_REV
    return {"machine": ident.get("machine"), "vendor": ident.get("vendor"),
            "model_name": ident.get("model_name"), **{k: ident.get(k) for k in rev},
            "isa": sorted(ident.get("isa") or []),
            "caches_kib": dict(sorted((ident.get("caches_kib") or {}).items()))}


def compute_host_id(ident: dict) -> str:
    """Short stable id of a host kind: sha256 of model, revision, ISA flags, cache sizes."""
    blob = json.dumps(_kind_fields(ident), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_host(ident: dict | None, short: bool = False) -> str:
    """One line: model name, revision, microarchitecture, L2/L3 (``short``: no caches)."""
    if not ident:
        return "unknown host"
    if "host_id" not in ident:  # legacy provenance: only cpu_model
        return f"{ident.get('cpu_model') or 'unknown CPU'} (no further identity recorded)"
    if ident.get("arch") == "arm":
        rev = f"part {ident.get('part')} r{_int(ident.get('variant')) or 0}p{ident.get('revision')}"
    else:
        rev = f"fam {ident.get('family')} model {ident.get('model')} stepping {ident.get('stepping')}"
    ua = f", {ident['microarchitecture']}" if ident.get("microarchitecture") else ""
    if short:
        return f"{ident.get('model_name') or 'unknown CPU'} {rev}{ua}"
    c = ident.get("caches_kib") or {}
    caches = " ".join(f"{k} {_fmt_kib(v)}" for k, v in c.items() if k in ("L2", "L3"))
    return f"{ident.get('model_name') or 'unknown CPU'} {rev}{ua}" + (f", {caches}" if caches else "")


def _fmt_kib(v: int) -> str:
    return f"{v // 1024}M" if v >= 1024 and v % 1024 == 0 else f"{v}K"


# -- comparing ----------------------------------------------------------------------
def _differences(a: dict, b: dict, la: str, lb: str) -> list[tuple[str, str, str]]:
    """(kind, field, text); kind 'differs' (both known) or 'unknown' (one side lacks it)."""
    out: list[tuple[str, str]] = []

    def show(v):
        return "unknown" if v is None else str(v)

    keys = ["machine", "vendor", "model_name"]
    keys += list(_ARM_REV if "arm" in (a.get("arch"), b.get("arch")) else _X86_REV)
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if va != vb:
            kind = "differs" if va is not None and vb is not None else "unknown"
            out.append((kind, k, f"{k.replace('_', ' ')}: {show(va)} ({la}) vs {show(vb)} ({lb})"))
    if a.get("isa") is None or b.get("isa") is None:
        out.append(("unknown", "isa", f"isa flags: {'unknown' if a.get('isa') is None else 'known'} ({la}) "
                               f"vs {'unknown' if b.get('isa') is None else 'known'} ({lb})"))
    else:
        every = X86_ISA + ARM_ISA  # compare only flags both sides looked for
        checked = set(a.get("isa_checked") or every) & set(b.get("isa_checked") or every)
        fa, fb = set(a["isa"]) & checked, set(b["isa"]) & checked
        order = [f for f in X86_ISA + ARM_ISA if f in (fa ^ fb)]
        only_a, only_b = [f for f in order if f in fa], [f for f in order if f in fb]
        if only_a:
            out.append(("differs", "isa", f"{', '.join(only_a)} on {la}, missing on {lb}"))
        if only_b:
            out.append(("differs", "isa", f"{', '.join(only_b)} on {lb}, missing on {la}"))
    ca, cb = a.get("caches_kib"), b.get("caches_kib")
    if ca is None or cb is None:
        out.append(("unknown", "caches", f"caches: {'unknown' if ca is None else 'known'} ({la}) vs "
                               f"{'unknown' if cb is None else 'known'} ({lb})"))
    else:
        for lvl in sorted(set(ca) | set(cb)):
            va, vb = ca.get(lvl), cb.get(lvl)
            if va != vb:
                kind = "differs" if va is not None and vb is not None else "unknown"
                out.append((kind, "caches", f"{lvl} cache: {_fmt_kib(va) if va else 'unknown'} ({la}) vs "
                                  f"{_fmt_kib(vb) if vb else 'unknown'} ({lb})"))
    return out


def compare_hosts(a: dict, b: dict, labels: tuple[str, str] = ("table host", "this host")) -> list[str]:
    """Human-readable differences in host kind between identities ``a`` and ``b``.

    Empty when both are the same kind (kernel, microcode, core count and memory are
    not compared). A field one side lacks (older provenance) reads "unknown".
    """
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise ValueError(f"compare_hosts needs two identity dicts, got {type(a).__name__} "
                         f"and {type(b).__name__}")
    return [text for _, _, text in _differences(a, b, *labels)]


# -- tables -------------------------------------------------------------------------
