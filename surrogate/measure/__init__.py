"""Device measurement backends: profiles, export with a cache, runners, timing.

Importing this package loads only numpy and the standard library; torch,
litert-torch, ai-edge-litert and onnxruntime are imported inside the
functions that need them.
"""

from space.lazy import lazy_exports

from .backends import BACKENDS, Backend, get_backend
from .clocks import DEFAULT_ESTIMATOR, ESTIMATORS, RunTimes, estimate
from .export import (ConversionPool, ExportCache, ExportResult, convert_many, default_cache_dir, export_onnx,
                     export_tflite)
from .pinning import pin_process, pinned, tune_glibc_malloc
from .profiles import DEFAULT_PROFILE, PROFILES, DeviceProfile, get_profile, make_runner
from .runner_base import LoadedModel, Runner
from .timing import ItemResult, MeasureReport, MeasureSettings, measure, summarize

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "DeviceProfile",
    "get_profile",
    "Backend",
    "BACKENDS",
    "get_backend",
    "ExportCache",
    "ExportResult",
    "default_cache_dir",
    "export_tflite",
    "export_onnx",
    "ConversionPool",
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
    "ChunkClaims",
    "ClaimError",
    "claims_status",
    "parse_device",
    "merge_parts",
]

# several devices on one job: loaded on first use (they read surrogate.tables, which
# imports .clocks from this package while it initialises)
_, __getattr__, __dir__ = lazy_exports(__name__, {
    "claims": ("ChunkClaims", "ClaimError", "claims_status", "parse_device"),
    "merge": ("merge_parts",),
})
