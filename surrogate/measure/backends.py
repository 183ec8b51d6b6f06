"""One backend per runtime: everything a profile's ``runtime`` string means, in one class.

A backend names its runner class, the model format the runtime loads (and so how a
module becomes that file: :meth:`Backend.export_options`), whether it computes on
this host's calling thread (so that thread's CPU time is latency), the precisions it
runs, whether it can run here and which versions to record. Profiles
(:mod:`.profiles`) and the table jobs ask the backend instead of switching on the
runtime. Adding a runtime is one class here, decorated with :func:`register`
(the design of nn-Meter's backend registry, without its global configuration).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, ClassVar, Sequence

from .adb import AdbRunner, adb_available
from .export import ExportCache
from .installed import has_module, litert_interpreter_module, package_version
from .runner_base import Runner, RunnerProfile
from .runners import CudaTorchRunner, LiteRTRunner, OrtRunner, TorchRunner

__all__ = ["Backend", "BACKENDS", "register", "get_backend", "runtimes", "times_off_host"]

Executor = Callable[[Sequence[str]], tuple[int, str]]

#: runtime -> its backend
BACKENDS: dict[str, "Backend"] = {}


def register(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator: add a backend (one instance) under its ``runtime``."""
    if not cls.runtime or cls.runtime in BACKENDS:
        raise ValueError(f"backend {cls.__name__}: runtime {cls.runtime!r} is empty or taken")
    BACKENDS[cls.runtime] = cls()
    return cls


def runtimes(**facts: Any) -> tuple[str, ...]:
    """The registered runtimes, optionally only those whose attributes equal ``facts``."""
    return tuple(rt for rt, b in BACKENDS.items() if all(getattr(b, k) == v for k, v in facts.items()))


def times_off_host(runtime: str | None) -> bool:
    """Whether ``runtime`` times another device than this host (False: unknown runtime)."""
    return runtime in BACKENDS and get_backend(runtime).off_host


def get_backend(runtime: str) -> "Backend":
    """The backend of ``runtime``; ValueError naming it and the known ones."""
    try:
        return BACKENDS[runtime]
    except KeyError:
        raise ValueError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(BACKENDS)}") from None


class Backend:
    """What one runtime means. Subclass, set the class attributes, override what differs."""

    #: the profile's ``runtime`` string
    runtime: ClassVar[str] = ""
    #: the runner class timing on it
    runner: ClassVar[type[Runner]]
    #: model format the runtime loads: ``tflite``, ``onnx`` or ``none`` (runs the module)
    fmt: ClassVar[str] = "none"
    #: computes on this host's calling thread, so its CPU time is the latency (clock ``cpu``)
    cpu_clock: ClassVar[bool] = False
    #: times another device (an adb-attached phone), so this host's identity does not apply
    off_host: ClassVar[bool] = False
    precisions: ClassVar[tuple[str, ...]] = ("float32",)
    #: key of :meth:`versions` that is the runtime's own version
    version_key: ClassVar[str] = "torch"

    def available(self, profile: RunnerProfile, serial: str | None = None,
                  executor: Executor | None = None) -> tuple[bool, str]:
        """Whether ``profile`` can run here, and why not (``serial``/``executor``: adb only)."""
        if not has_module("torch"):
            return False, "torch is not installed"
        return True, f"torch {package_version('torch')}"

    def versions(self) -> dict[str, str | None]:
        """Versions of the runtime and converter (no imports), for provenance."""
        return {"torch": package_version("torch")}

    def version(self) -> str | None:
        """Version of the runtime proper (e.g. ai-edge-litert, onnxruntime, torch)."""
        return self.versions().get(self.version_key)

    def host_info(self) -> dict[str, Any]:
        """Runtime-specific provenance of this host (e.g. the GPU)."""
        return {}

    def export_options(self, profile: RunnerProfile) -> dict[str, Any] | None:
        """:meth:`ExportCache.export` options of the model file ``profile`` loads (None: none)."""
        if self.fmt == "none":
            return None
        if self.fmt == "tflite":
            return {"fmt": "tflite", "nhwc": profile.layout == "NHWC", "converter": profile.converter}
        return {"fmt": self.fmt}

    def make_runner(self, profile: RunnerProfile, cache: ExportCache | None = None, seed: int = 0, *,
                    serial: str | None = None, executor: Executor | None = None,
                    **kwargs: Any) -> Runner:
        """The runner of ``profile`` (``serial``/``executor`` are for adb and ignored here)."""
        return self.runner(profile, cache, seed, export_options=self.export_options(profile), **kwargs)


@register
class LiteRTBackend(Backend):
    """LiteRT interpreter (ai-edge-litert) on this host's CPU; .tflite models."""

    runtime = "litert"
    runner = LiteRTRunner
    fmt = "tflite"
    cpu_clock = True
    version_key = "litert"

    def available(self, profile: RunnerProfile, serial: str | None = None,
                  executor: Executor | None = None) -> tuple[bool, str]:
        """Whether the LiteRT interpreter imports (and litert-torch, for that converter)."""
        mod, ver = litert_interpreter_module()
        if not mod:
            return False, "no LiteRT interpreter: pip install ai-edge-litert"
        try:
            __import__(mod, fromlist=["Interpreter"])
        except Exception as exc:  # noqa: BLE001 - report any import failure
            return False, f"{mod} does not import: {exc}"
        if profile.converter == "litert-torch":
            if not has_module("litert_torch"):
                return False, ("converter litert-torch is not installed: pip install "
                               "'mnas-surrogate[litert-torch]', or use --converter direct")
            return True, f"{mod} {ver}, litert-torch {package_version('litert-torch')}"
        return True, f"{mod} {ver}, direct .tflite writer"

    def versions(self) -> dict[str, str | None]:
        """torch, the LiteRT interpreter module and version, litert-torch."""
        mod, ver = litert_interpreter_module()
        return {**super().versions(), "litert_interpreter": mod or None, "litert": ver,
                "litert-torch": package_version("litert-torch")}


@register
class OrtBackend(Backend):
    """ONNX Runtime's CPU execution provider on this host; .onnx models."""

    runtime = "onnxruntime"
    runner = OrtRunner
    fmt = "onnx"
    cpu_clock = True
    version_key = "onnxruntime"

    def available(self, profile: RunnerProfile, serial: str | None = None,
                  executor: Executor | None = None) -> tuple[bool, str]:
        """Whether onnxruntime and onnx (for the exporter) are installed."""
        if not has_module("onnxruntime"):
            return False, "onnxruntime is not installed"
        if not has_module("onnx"):
            return False, "onnx (needed by torch.onnx.export) is not installed"
        return True, f"onnxruntime {package_version('onnxruntime')}"

    def versions(self) -> dict[str, str | None]:
        """torch, onnxruntime, onnx."""
        return {**super().versions(), "onnxruntime": package_version("onnxruntime"),
                "onnx": package_version("onnx")}


@register
class TorchBackend(Backend):
    """Eager PyTorch on this host's CPU; runs the module itself."""

    runtime = "torch"
    runner = TorchRunner
    cpu_clock = True


@register
class CudaTorchBackend(Backend):
    """Eager PyTorch on the first CUDA device, timed with CUDA events."""

    runtime = "torch-cuda"
    runner = CudaTorchRunner
    precisions = ("float32", "float16")

    def available(self, profile: RunnerProfile, serial: str | None = None,
                  executor: Executor | None = None) -> tuple[bool, str]:
        """Whether torch is installed and sees a CUDA device."""
        if not has_module("torch"):
            return False, "torch is not installed"
        import torch

        if not torch.cuda.is_available():
            return False, f"torch {torch.__version__} sees no CUDA device"
        return True, f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"

    def versions(self) -> dict[str, str | None]:
        """torch and, when torch is already imported, its CUDA version."""
        torch = sys.modules.get("torch")  # do not import torch just for provenance
        return {**super().versions(), "cuda": getattr(torch.version, "cuda", None) if torch else None}

    def host_info(self) -> dict[str, Any]:
        """The GPU's name (None unless torch is imported and sees one)."""
        torch = sys.modules.get("torch")
        try:
            gpu = torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None
        except Exception:  # noqa: BLE001
            gpu = None
        return {"gpu": gpu}


@register
class AdbBackend(LiteRTBackend):
    """TFLite's ``benchmark_model`` on an adb-attached phone; .tflite models converted here."""

    runtime = "adb-benchmark_model"
    runner = AdbRunner
    cpu_clock = False
    off_host = True

    def available(self, profile: RunnerProfile, serial: str | None = None,
                  executor: Executor | None = None) -> tuple[bool, str]:
        """Whether adb shows the phone (``serial``, else the only one attached)."""
        return adb_available(serial, executor)

    def make_runner(self, profile: RunnerProfile, cache: ExportCache | None = None, seed: int = 0, *,
                    serial: str | None = None, executor: Executor | None = None,
                    **kwargs: Any) -> Runner:
        """An :class:`~.adb.AdbRunner` for the phone ``serial`` through ``executor``."""
        return self.runner(profile, cache, seed, export_options=self.export_options(profile),
                           serial=serial, executor=executor, **kwargs)
