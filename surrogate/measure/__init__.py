"""Device measurement backends: profiles, export with a cache, runners, timing.

Importing this package loads only numpy and the standard library; torch,
litert-torch, ai-edge-litert and onnxruntime are imported inside the
functions that need them.
"""

from .export import ExportCache, ExportResult, convert_many, default_cache_dir, export_onnx, export_tflite
from .profiles import DEFAULT_PROFILE, PROFILES, DeviceProfile, get_profile
from .runners import LoadedModel, Runner, make_runner, pin_process, pinned, tune_glibc_malloc
from .clocks import DEFAULT_ESTIMATOR, ESTIMATORS, RunTimes, estimate
from .timing import ItemResult, MeasureReport, MeasureSettings, measure, summarize

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "DeviceProfile",
    "get_profile",
    "ExportCache",
    "ExportResult",
    "default_cache_dir",
    "export_tflite",
    "export_onnx",
    "convert_many",
    "LoadedModel",
    "Runner",
    "make_runner",
    "pin_process",
    "pinned",
    "tune_glibc_malloc",
    "RunTimes",
    "estimate",
    "ESTIMATORS",
    "DEFAULT_ESTIMATOR",
    "MeasureSettings",
    "ItemResult",
    "MeasureReport",
    "measure",
    "summarize",
]
