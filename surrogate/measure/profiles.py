"""Device profiles: what "latency on device X" means, fixed in one frozen record.

A profile names the hardware class, the runtime and its version, threads,
precision, batch, input layout, core pinning and how one run is timed. It is
recorded (``as_dict`` + ``host_info``) with every table as provenance.
Nothing here imports a heavy runtime at module import time.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = [
    "DeviceProfile",
    "PROFILES",
    "DEFAULT_PROFILE",
    "get_profile",
    "cpu_model",
    "litert_interpreter_module",
    "package_version",
]

DEFAULT_PROFILE = "cpu-litert"

# Environment variables an ``android-adb`` run reads for the phone's serial
# (ours first, then adb's own).
ADB_SERIAL_ENV_VARS: tuple[str, ...] = ("MNAS_ADB_SERIAL", "ANDROID_SERIAL")

_RUNTIMES = ("litert", "onnxruntime", "torch", "torch-cuda", "adb-benchmark_model")
#: latency clocks: the calling thread's CPU time, or wall time
_CLOCKS = ("cpu", "wall")
#: runtimes that compute on the calling thread of this host (so its CPU time is latency)
_CPU_CLOCK_RUNTIMES = ("litert", "onnxruntime", "torch")


def package_version(dist: str) -> str | None:
    """Installed version of distribution ``dist`` (no import), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def litert_interpreter_module() -> tuple[str, str | None]:
    """Which LiteRT interpreter package is importable: (module, version).

    Prefers ``ai_edge_litert.interpreter``; falls back to the older
    ``tflite_runtime.interpreter``. Returns ("", None) when neither exists.
    """
    if importlib.util.find_spec("ai_edge_litert") is not None:
        return "ai_edge_litert.interpreter", package_version("ai-edge-litert")
    if importlib.util.find_spec("tflite_runtime") is not None:
        return "tflite_runtime.interpreter", package_version("tflite-runtime")
    return "", None


def cpu_model() -> str:
    """CPU model string from /proc/cpuinfo (x86 'model name', ARM 'Hardware'...)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    for key in ("model name", "Hardware", "Processor", "cpu model", "uarch"):
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return platform.processor() or platform.machine() or "unknown"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class DeviceProfile:
    """One measurement configuration. Derive variants with ``dataclasses.replace``.

    Attributes:
        name: registry key, e.g. ``cpu-litert``.
        runtime: one of ``litert``, ``onnxruntime``, ``torch``, ``torch-cuda``,
            ``adb-benchmark_model``.
        threads: intra-op threads of the runtime.
        precision: ``float32`` (``float16`` allowed for torch-cuda).
        batch: batch size prepended when an input shape is given without N.
        layout: layout of the tensor fed to the runtime, ``NHWC`` or ``NCHW``.
            Callers always describe shapes in torch's NCHW; runners convert.
        pin_core: core to pin the measuring process to; -1 = last allowed core,
            None = no pinning.
        warmup, runs, rounds: defaults for the measurement (see MeasureSettings).
        timing: how one run is timed: ``perf_counter_ns``, ``cuda_events`` or
            ``benchmark_model``.
        clock: which recorded clock is the latency: ``cpu`` (the calling thread's
            ``thread_time_ns``; barely moves when other processes share the core,
            where wall time doubles) or ``wall``. ``cpu`` needs a local CPU
            runtime (litert, onnxruntime, torch) with 1 thread.
        exporter: model format the runtime loads: ``tflite``, ``onnx`` or ``none``.
        converter: what writes the ``.tflite``: ``direct`` (the project's flatbuffer
            writer, milliseconds per model) or ``litert-torch`` (the reference
            converter, seconds per model; also for modules the writer cannot express).
        cuda_graphs: cuda-torch only: replay a captured CUDA graph.
        description: one line for ``mnas devices``.
    """

    name: str
    runtime: str
    threads: int = 1
    precision: str = "float32"
    batch: int = 1
    layout: str = "NCHW"
    pin_core: int | None = -1
    warmup: int = 10
    runs: int = 30
    rounds: int = 5
    timing: str = "perf_counter_ns"
    clock: str = "wall"
    exporter: str = "none"
    converter: str = "direct"
    cuda_graphs: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.converter not in ("direct", "litert-torch"):
            raise ValueError(f"profile {self.name!r}: converter must be 'direct' or 'litert-torch', "
                             f"got {self.converter!r}")
        if self.runtime not in _RUNTIMES:
            raise ValueError(
                f"profile {self.name!r}: runtime {self.runtime!r} is not one of {_RUNTIMES}"
            )
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"profile {self.name!r}: layout must be NCHW or NHWC, got {self.layout!r}")
        for field in ("threads", "batch", "runs", "rounds"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"profile {self.name!r}: {field} must be >= 1, got {getattr(self, field)!r}")
        if self.warmup < 0:
            raise ValueError(f"profile {self.name!r}: warmup must be >= 0, got {self.warmup!r}")
        if self.precision not in ("float32", "float16"):
            raise ValueError(f"profile {self.name!r}: precision must be float32 or float16, got {self.precision!r}")
        if self.precision == "float16" and self.runtime != "torch-cuda":
            raise ValueError(f"profile {self.name!r}: float16 is only supported by torch-cuda")
        if self.clock not in _CLOCKS:
            raise ValueError(f"profile {self.name!r}: clock must be one of {_CLOCKS}, got {self.clock!r}")
        if self.clock == "cpu" and self.runtime not in _CPU_CLOCK_RUNTIMES:
            raise ValueError(f"profile {self.name!r}: clock 'cpu' needs a runtime computing on this "
                             f"host's calling thread ({', '.join(_CPU_CLOCK_RUNTIMES)}); runtime "
                             f"{self.runtime!r} needs clock 'wall'")
        if self.clock == "cpu" and self.threads != 1:
            raise ValueError(f"profile {self.name!r}: clock 'cpu' reads the calling thread's CPU "
                             f"time and misses the work of other threads; with threads="
                             f"{self.threads} use clock 'wall'")

    # ------------------------------------------------------------------ info
    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (for provenance files)."""
        return dataclasses.asdict(self)

    def runtime_versions(self) -> dict[str, str | None]:
        """Versions of the runtime and converter this profile uses (no imports)."""
        v: dict[str, str | None] = {"torch": package_version("torch")}
        if self.runtime in ("litert", "adb-benchmark_model"):
            mod, ver = litert_interpreter_module()
            v["litert_interpreter"] = mod or None
            v["litert"] = ver
            v["litert-torch"] = package_version("litert-torch")
        elif self.runtime == "onnxruntime":
            v["onnxruntime"] = package_version("onnxruntime")
            v["onnx"] = package_version("onnx")
        elif self.runtime == "torch-cuda":
            v["cuda"] = _torch_cuda_version()
        return v

    def runtime_version(self) -> str | None:
        """Version of the runtime proper (e.g. ai-edge-litert, onnxruntime, torch)."""
        v = self.runtime_versions()
        key = {"litert": "litert", "adb-benchmark_model": "litert", "onnxruntime": "onnxruntime"}.get(
            self.runtime, "torch"
        )
        return v.get(key)

    def host_info(self, adb_device: dict[str, str] | None = None) -> dict[str, Any]:
        """Provenance of the machine measuring: CPU, cores, versions, date, settings, and
        ``host`` (:func:`surrogate.measure.host.host_identity`: what kind of host this is)."""
        from .hostid import host_identity

        try:
            allowed = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = os.cpu_count() or 0
        info: dict[str, Any] = {
            "profile": self.as_dict(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_allowed": allowed,
            "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "numpy": package_version("numpy"),
            "runtime_versions": self.runtime_versions(),
            "cpu_governor": _read_first("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": host_identity(),
        }
        if self.runtime == "torch-cuda":
            info["gpu"] = _cuda_device_name()
        if adb_device is not None:
            info["adb_device"] = dict(adb_device)
        return info

    # ------------------------------------------------------------ available
    def available(
        self,
        serial: str | None = None,
        executor: Callable[[Sequence[str]], tuple[int, str]] | None = None,
    ) -> tuple[bool, str]:
        """Whether this profile can run here, and why not if it cannot.

        ``serial``/``executor`` only matter for ``android-adb``.
        """
        if self.runtime == "litert":
            mod, ver = litert_interpreter_module()
            if not mod:
                return False, "no LiteRT interpreter: pip install ai-edge-litert"
            try:
                __import__(mod, fromlist=["Interpreter"])
            except Exception as exc:  # noqa: BLE001 - report any import failure
                return False, f"{mod} does not import: {exc}"
            if not _has_module("litert_torch"):
                return False, "litert-torch (the .tflite converter) is not installed"
            return True, f"{mod} {ver}, litert-torch {package_version('litert-torch')}"
        if self.runtime == "onnxruntime":
            if not _has_module("onnxruntime"):
                return False, "onnxruntime is not installed"
            if not _has_module("onnx"):
                return False, "onnx (needed by torch.onnx.export) is not installed"
            return True, f"onnxruntime {package_version('onnxruntime')}"
        if self.runtime == "torch":
            if not _has_module("torch"):
                return False, "torch is not installed"
            return True, f"torch {package_version('torch')}"
        if self.runtime == "torch-cuda":
            if not _has_module("torch"):
                return False, "torch is not installed"
            import torch

            if not torch.cuda.is_available():
                return False, f"torch {torch.__version__} sees no CUDA device"
            return True, f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        if self.runtime == "adb-benchmark_model":
            return _adb_available(serial, executor)
        return False, f"unknown runtime {self.runtime!r}"


def _read_first(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip() or None
    except OSError:
        return None


def _torch_cuda_version() -> str | None:
    if "torch" not in sys.modules:
        return None  # do not import torch just for provenance
    return getattr(sys.modules["torch"].version, "cuda", None)


def _cuda_device_name() -> str | None:
    if "torch" not in sys.modules:
        return None
    torch = sys.modules["torch"]
    try:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


def resolve_adb_serial(serial: str | None = None) -> str | None:
    """Serial from the argument, else MNAS_ADB_SERIAL, else ANDROID_SERIAL, else None."""
    if serial:
        return serial
    for var in ADB_SERIAL_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def _default_executor(cmd: Sequence[str]) -> tuple[int, str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _adb_available(
    serial: str | None, executor: Callable[[Sequence[str]], tuple[int, str]] | None
) -> tuple[bool, str]:
    if executor is None:
        if shutil.which("adb") is None:
            return False, "adb is not on PATH (no phone attached to this machine)"
        executor = _default_executor
    try:
        rc, out = executor(["adb", "devices"])
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"adb devices failed: {exc}"
    if rc != 0:
        return False, f"adb devices exited {rc}: {out.strip()[:200]}"
    devices = [
        line.split()[0]
        for line in out.splitlines()[1:]
        if line.strip() and len(line.split()) >= 2 and line.split()[1] == "device"
    ]
    if not devices:
        return False, "adb sees no device in state 'device'"
    want = resolve_adb_serial(serial)
    if want is None:
        if len(devices) > 1:
            return False, (
                f"{len(devices)} devices attached ({', '.join(devices)}); choose one with "
                f"--serial or {ADB_SERIAL_ENV_VARS[0]}"
            )
        return True, f"device {devices[0]}"
    if want not in devices:
        return False, f"device {want!r} not attached (attached: {', '.join(devices)})"
    return True, f"device {want}"


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="cpu-litert",
            runtime="litert",
            clock="cpu",
            warmup=5,
            runs=20,
            layout="NHWC",
            exporter="tflite",
            description=(
                "LiteRT interpreter (ai-edge-litert), XNNPACK, 1 thread, float32, batch 1, "
                "NHWC input, process pinned to one core (MnasNet's methodology on this CPU)"
            ),
        ),
        DeviceProfile(
            name="cpu-onnxruntime",
            runtime="onnxruntime",
            clock="cpu",
            exporter="onnx",
            description=(
                "ONNX Runtime CPU EP, 1 intra-op + 1 inter-op thread, sequential, "
                "all graph optimisations, float32, batch 1, pinned"
            ),
        ),
        DeviceProfile(
            name="cpu-torch",
            runtime="torch",
            clock="cpu",
            description=(
                "PyTorch eager, torch.set_num_threads(1), eval + inference_mode, float32, "
                "batch 1, pinned, glibc malloc tuned via mallopt"
            ),
        ),
        DeviceProfile(
            name="cuda-torch",
            runtime="torch-cuda",
            pin_core=None,
            warmup=50,
            runs=100,
            timing="cuda_events",
            clock="wall",
            description=(
                "PyTorch eager on the first CUDA device, batch 1 (configurable), CUDA events "
                "after warm-up, optional CUDA graphs"
            ),
        ),
        DeviceProfile(
            name="android-adb",
            runtime="adb-benchmark_model",
            layout="NHWC",
            pin_core=None,  # pinned on the phone with taskset, not on the host
            warmup=20,
            runs=50,
            timing="benchmark_model",
            clock="wall",
            exporter="tflite",
            description=(
                "TFLite benchmark_model on an adb-attached phone under taskset, 1 thread, "
                "XNNPACK, float32 (serial via argument, MNAS_ADB_SERIAL or ANDROID_SERIAL)"
            ),
        ),
    )
}


def get_profile(name: str, **overrides: Any) -> DeviceProfile:
    """Profile by name, optionally with fields replaced (e.g. ``batch=64``).

    Raises ValueError naming the bad profile or field and the allowed ones.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown device profile {name!r}; expected one of: {', '.join(PROFILES)}")
    if not overrides:
        return PROFILES[name]
    fields = {f.name for f in dataclasses.fields(DeviceProfile)} - {"name"}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"profile {name!r}: unknown setting(s) {bad}; expected some of {sorted(fields)}")
    return dataclasses.replace(PROFILES[name], **overrides)
