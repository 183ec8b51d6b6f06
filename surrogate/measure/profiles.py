"""Device profiles: what "latency on device X" means, fixed in one frozen record.

A profile names the hardware class, the runtime and its version, threads,
precision, batch, input layout, core pinning and how one run is timed. It is
recorded (``as_dict`` + ``host_info``) with every table as provenance. What the
runtime string means (its runner, model format, availability, versions) is its
backend's (:mod:`.backends`); :func:`make_runner` asks it for the runner.
Nothing here imports a heavy runtime at module import time.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .backends import Backend, get_backend, runtimes
from ..timingspec import CLOCKS, DEFAULT_ESTIMATOR, ESTIMATORS, TimingSpec
from .export import ExportCache
from .installed import package_version
from .pinning import allowed_cpus
from .runner_base import Runner

__all__ = [
    "DeviceProfile",
    "PROFILES",
    "DEFAULT_PROFILE",
    "as_profile",
    "get_profile",
    "make_runner",
    "cpu_model",
]

from ..paths import DEFAULT_PROFILE  # noqa: E402 (one owner of the default name)


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


@dataclass(frozen=True)
class DeviceProfile:
    """One measurement configuration. Derive variants with ``dataclasses.replace``.

    Attributes:
        name: registry key, e.g. ``cpu-litert``.
        runtime: a registered backend (:mod:`.backends`): ``litert``, ``onnxruntime``,
            ``torch``, ``torch-cuda``, ``adb-benchmark_model``.
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
        estimator: per-round latency estimator of its tables (``min``; the local
            CPU profiles ``min+ref``, each round paired with the reference operator:
            ``bench/results/pairing_*``).
        exporter: model format the runtime loads (``tflite``, ``onnx`` or ``none``): the
            backend's; left empty it is filled in, for the provenance.
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
    estimator: str = DEFAULT_ESTIMATOR
    exporter: str = ""
    converter: str = "direct"
    cuda_graphs: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.converter not in ("direct", "litert-torch"):
            raise ValueError(f"profile {self.name!r}: converter must be 'direct' or 'litert-torch', "
                             f"got {self.converter!r}")
        try:
            backend = get_backend(self.runtime)
        except ValueError as exc:
            raise ValueError(f"profile {self.name!r}: {exc}") from None
        if not self.exporter:
            object.__setattr__(self, "exporter", backend.fmt)
        if self.exporter != backend.fmt:
            raise ValueError(f"profile {self.name!r}: runtime {self.runtime!r} loads {backend.fmt!r} "
                             f"models, not exporter {self.exporter!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"profile {self.name!r}: layout must be NCHW or NHWC, got {self.layout!r}")
        for field in ("threads", "batch", "runs", "rounds"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"profile {self.name!r}: {field} must be >= 1, got {getattr(self, field)!r}")
        if self.warmup < 0:
            raise ValueError(f"profile {self.name!r}: warmup must be >= 0, got {self.warmup!r}")
        if self.precision not in ("float32", "float16"):
            raise ValueError(f"profile {self.name!r}: precision must be float32 or float16, got {self.precision!r}")
        if self.precision not in backend.precisions:
            able = [rt for rt in runtimes() if self.precision in get_backend(rt).precisions]
            raise ValueError(f"profile {self.name!r}: {self.precision} is only supported by "
                             f"{', '.join(able)}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"profile {self.name!r}: estimator must be one of {ESTIMATORS}, "
                             f"got {self.estimator!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"profile {self.name!r}: clock must be one of {CLOCKS}, got {self.clock!r}")
        if self.clock == "cpu" and not backend.cpu_clock:
            raise ValueError(f"profile {self.name!r}: clock 'cpu' needs a runtime computing on this "
                             f"host's calling thread ({', '.join(runtimes(cpu_clock=True))}); runtime "
                             f"{self.runtime!r} needs clock 'wall'")
        if self.clock == "cpu" and self.threads != 1:
            raise ValueError(f"profile {self.name!r}: clock 'cpu' reads the calling thread's CPU "
                             f"time and misses the work of other threads; with threads="
                             f"{self.threads} use clock 'wall'")

    # ------------------------------------------------------------------ info
    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (for provenance files)."""
        return dataclasses.asdict(self)

    @property
    def timing_spec(self) -> TimingSpec:
        """How this profile times (:meth:`surrogate.timingspec.TimingSpec.from_profile`)."""
        return TimingSpec.from_profile(self)

    @property
    def backend(self) -> Backend:
        """The :class:`~.backends.Backend` of this profile's runtime."""
        return get_backend(self.runtime)

    def runtime_versions(self) -> dict[str, str | None]:
        """Versions of the runtime and converter this profile uses (no imports)."""
        return self.backend.versions()

    def runtime_version(self) -> str | None:
        """Version of the runtime proper (e.g. ai-edge-litert, onnxruntime, torch)."""
        return self.backend.version()

    def host_info(self, adb_device: dict[str, str] | None = None) -> dict[str, Any]:
        """Provenance of the machine measuring: CPU, cores, versions, date, settings, and
        ``host`` (:func:`surrogate.measure.host.host_identity`: what kind of host this is)."""
        from ..tables import now_iso
        from .hostid import host_identity

        info: dict[str, Any] = {
            "profile": self.as_dict(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_allowed": len(allowed_cpus()),
            "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "numpy": package_version("numpy"),
            "runtime_versions": self.runtime_versions(),
            "cpu_governor": _read_first("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "date_utc": now_iso(),
            "host": host_identity(),
            **self.backend.host_info(),
        }
        if adb_device is not None:
            info["adb_device"] = dict(adb_device)
        return info

    def available(
        self,
        serial: str | None = None,
        executor: Callable[[Sequence[str]], tuple[int, str]] | None = None,
    ) -> tuple[bool, str]:
        """Whether this profile can run here, and why not if it cannot (its backend's check).

        ``serial``/``executor`` only matter for ``android-adb``.
        """
        return self.backend.available(self, serial, executor)


def _read_first(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip() or None
    except OSError:
        return None


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name=DEFAULT_PROFILE,
            runtime="litert",
            clock="cpu",
            estimator="min+ref",
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
            estimator="min+ref",
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
            estimator="min+ref",
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



def as_profile(profile: "str | DeviceProfile") -> DeviceProfile:
    """``profile`` itself, or the registry's profile of that name: callers resolve a name once
    and pass the object down."""
    return profile if isinstance(profile, DeviceProfile) else get_profile(profile)

def make_runner(
    profile: DeviceProfile | str,
    cache: ExportCache | None = None,
    *,
    seed: int = 0,
    serial: str | None = None,
    executor: Callable[[Sequence[str]], tuple[int, str]] | None = None,
    **kwargs: Any,
) -> Runner:
    """Runner for ``profile`` (a DeviceProfile or a registry name), made by its backend.

    ``serial`` and ``executor`` are for ``android-adb`` (see ``adb.AdbRunner``).
    """
    profile = as_profile(profile)
    return profile.backend.make_runner(profile, cache, seed, serial=serial, executor=executor, **kwargs)
