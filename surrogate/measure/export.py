"""Export torch modules to .tflite and .onnx, through a content-addressed cache.

Two .tflite converters: ``direct`` (default; :mod:`.tflite_writer` writes the
flatbuffer of a :mod:`space.build` module in milliseconds) and ``litert-torch``
(the maintained PyTorch->LiteRT converter, 2-5 s per operator; the reference the
direct writer is checked against, and the one for modules the writer cannot express).

The cache key is the sha256 of the module's classes (and their ``forward``
bytecode), its structure ``repr``, the plain (non-tensor) attributes of every
submodule, its state-dict bytes, the input shape, and the
exporter's name and version. Files live at ``<cache_dir>/<key>.tflite|.onnx`` and
are written atomically (:func:`surrogate.tables.atomic_path`), so concurrent
processes never see a torn file and nothing is converted twice.
:class:`ConversionPool` is the one way to convert many models ahead of their use.
The converters themselves live in :mod:`.converters`.

Shapes are always given in torch's NCHW order. The .tflite model takes NHWC
input (and gives NHWC output for rank>=3 outputs): the module is wrapped with
``litert_torch.to_channel_last_io``, whose permutes cancel against the
converter's own layout transposes, so no TRANSPOSE op is left in the graph
(checked in NOTES.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from ..atomic import atomic_path
from .cachelimit import cache_max_bytes, prune
from .converters import convert_onnx, convert_tflite, write_direct
from .converters import install_cia_cache as _install_cia_cache  # noqa: F401 (tests import it here)
from .installed import package_version

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "CACHE_ENV_VAR",
    "ExportCache",
    "ExportResult",
    "default_cache_dir",
    "module_fingerprint",
    "normalize_shape",
    "export_tflite",
    "export_onnx",
    "quick_export",
    "ConversionPool",
    "convert_many",
    "TFLITE_CONVERTERS",
]

CACHE_ENV_VAR = "MNAS_CACHE_DIR"
_KEY_VERSION = "mnas-export-v2"
FORMATS = ("tflite", "onnx")
TFLITE_CONVERTERS = ("direct", "litert-torch")
ONNX_OPSET = 17
#: conversions between two checks of the cache size cap (surrogate.measure.cachelimit)
PRUNE_EVERY = 64


def default_cache_dir() -> Path:
    """``$MNAS_CACHE_DIR`` if set, else ``~/.cache/mnas-surrogate``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mnas-surrogate"


def normalize_shape(input_shape: Sequence[int], batch: int = 1) -> tuple[int, ...]:
    """Validate an NCHW-style shape; a 3-tuple (C, H, W) gets ``batch`` prepended."""
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a sequence of ints, got {input_shape!r}") from None
    if len(shape) == 3:
        shape = (int(batch),) + shape
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive ints like (1, C, H, W), got {input_shape!r}")
    return shape


def _check_converter(converter: str, nhwc: bool) -> None:
    if converter not in TFLITE_CONVERTERS:
        raise ValueError(f"tflite converter must be one of {', '.join(TFLITE_CONVERTERS)}; got {converter!r}")
    if converter == "direct" and not nhwc:
        raise ValueError("the direct .tflite writer emits NHWC graphs only; use converter 'litert-torch' for NCHW")


def _tflite_exporter_id(nhwc: bool, converter: str = "direct") -> tuple[str, str]:
    _check_converter(converter, nhwc)
    if converter == "direct":
        from .tflite_writer import WRITER_NAME, WRITER_VERSION

        return WRITER_NAME, f"writer={WRITER_VERSION};ai-edge-litert={package_version('ai-edge-litert')}"
    name = "litert-torch-nhwc" if nhwc else "litert-torch-nchw"
    return name, f"litert-torch={package_version('litert-torch')};torch={package_version('torch')}"


def _onnx_exporter_id(opset: int) -> tuple[str, str]:
    return "torch.onnx-torchscript", f"torch={package_version('torch')};opset={opset}"


def module_fingerprint(
    module: "torch.nn.Module",
    input_shape: Sequence[int],
    exporter: str,
    exporter_version: str,
) -> str:
    """sha256 hex of everything that determines the exported file."""
    import torch

    h = hashlib.sha256()

    def add(*parts: Any) -> None:
        for p in parts:
            b = p if isinstance(p, bytes) else str(p).encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)

    add(_KEY_VERSION, exporter, exporter_version, tuple(int(d) for d in input_shape))
    seen: set[type] = set()
    for name, sub in module.named_modules():
        cls = type(sub)
        add("mod", name, f"{cls.__module__}.{cls.__qualname__}")
        if cls not in seen:
            seen.add(cls)
            code = getattr(getattr(cls, "forward", None), "__code__", None)
            if code is not None:  # custom forward logic with an identical repr still differs
                add(code.co_code, code.co_names)
        # Plain attributes steer forward() without showing in repr or state_dict
        # (e.g. whether a layer adds its residual): they must enter the key too.
        for attr, value in sorted(vars(sub).items()):
            if attr.startswith("_") or attr == "training":
                continue
            if value is None or isinstance(value, (bool, int, float, str, tuple)) or (
                    is_dataclass(value) and not isinstance(value, type)):
                add("attr", attr, repr(value))
    add("repr", repr(module))
    for key, t in module.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        add("sd", key, str(t.dtype), tuple(t.shape))
        if t.numel():
            add(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ExportResult:
    """Where an exported model lies and whether it came from the cache."""

    path: Path
    key: str
    fmt: str
    cached: bool
    seconds: float


class ExportCache:
    """Content-addressed store of exported models with hit/conversion counters."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None,
                 max_bytes: float | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.max_bytes = cache_max_bytes() if max_bytes is None else float(max_bytes)
        self.hits = 0
        self.conversions = 0
        self.convert_seconds = 0.0

    def _after_conversion(self) -> None:  # the size cap, checked every PRUNE_EVERY conversions
        if self.conversions % PRUNE_EVERY == 1 and math.isfinite(self.max_bytes):
            prune(self.dir, self.max_bytes)

    def path_for(self, key: str, fmt: str) -> Path:
        """File path of ``key`` in format ``fmt``."""
        if fmt not in FORMATS:
            raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
        return self.dir / f"{key}.{fmt}"

    def key(self, module: "torch.nn.Module", input_shape: Sequence[int], fmt: str,
            *, nhwc: bool = True, opset: int = ONNX_OPSET, converter: str = "direct") -> str:
        """Cache key of ``module`` at ``input_shape`` for ``fmt`` (and the .tflite ``converter``)."""
        if fmt not in FORMATS:
            raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
        shape = normalize_shape(input_shape)
        exp, ver = _tflite_exporter_id(nhwc, converter) if fmt == "tflite" else _onnx_exporter_id(opset)
        return module_fingerprint(module, shape, exp, ver)

    def _cached(self, key: str, fmt: str) -> ExportResult | None:
        dst = self.path_for(key, fmt)
        if dst.is_file() and dst.stat().st_size > 0:
            self.hits += 1
            with contextlib.suppress(OSError):  # used now (access time): last to be evicted
                os.utime(dst, ns=(time.time_ns(), dst.stat().st_mtime_ns))
            return ExportResult(dst, key, fmt, True, 0.0)
        return None

    def lookup(self, module: "torch.nn.Module", input_shape: Sequence[int], fmt: str,
               **options: Any) -> ExportResult | None:
        """The cached export of ``module`` (options as :meth:`export`), or None: converts nothing."""
        return self._cached(self.key(module, input_shape, fmt, **options), fmt)

    def export(
        self,
        module: "torch.nn.Module",
        input_shape: Sequence[int],
        fmt: str,
        *,
        nhwc: bool = True,
        opset: int = ONNX_OPSET,
        converter: str = "direct",
    ) -> ExportResult:
        """Path of the exported model, converting only on a cache miss."""
        shape = normalize_shape(input_shape)
        key = self.key(module, shape, fmt, nhwc=nhwc, opset=opset, converter=converter)
        hit = self._cached(key, fmt)
        if hit is not None:
            return hit
        dst = self.path_for(key, fmt)
        t0 = time.perf_counter()
        with atomic_path(dst, suffix=f".{fmt}") as tmp:
            if fmt == "tflite" and converter == "direct":
                write_direct(module, shape, tmp)
            elif fmt == "tflite":
                convert_tflite(module, shape, nhwc, tmp)
            else:
                convert_onnx(module, shape, opset, tmp)
        seconds = time.perf_counter() - t0
        self.conversions += 1
        self.convert_seconds += seconds
        self._after_conversion()
        return ExportResult(dst, key, fmt, False, seconds)


def export_tflite(
    module: "torch.nn.Module",
    input_shape: Sequence[int],
    cache: ExportCache | None = None,
    *,
    nhwc: bool = True,
    converter: str = "direct",
) -> ExportResult:
    """Convert ``module`` (NCHW ``input_shape``) to .tflite with ``converter``, cached."""
    return (cache or ExportCache()).export(module, input_shape, "tflite", nhwc=nhwc, converter=converter)


def export_onnx(
    module: "torch.nn.Module",
    input_shape: Sequence[int],
    cache: ExportCache | None = None,
    *,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Export ``module`` to ONNX (TorchScript exporter, ``opset``), cached."""
    return (cache or ExportCache()).export(module, input_shape, "onnx", opset=opset)


def quick_export(fmt: str, converter: str = "direct") -> bool:
    """Whether an export takes milliseconds (the direct .tflite writer): no worker is worth it."""
    return fmt == "tflite" and converter == "direct"


# ---------------------------------------------------------------- parallel
#: a conversion job: (module, NCHW shape), or a picklable callable building one where it runs
ModuleAndShape = tuple["torch.nn.Module", Sequence[int]]
ExportJob = Union[ModuleAndShape, Callable[[], ModuleAndShape]]


def _worker_init(cpus: list[int] | None) -> None:  # the one set-up of a conversion worker
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if cpus:
        from .pinning import pin_process

        pin_process(cpus)
    import torch

    torch.set_num_threads(1)


def _export_job(cache: ExportCache, job: ExportJob, options: dict[str, Any]) -> ExportResult:
    module, shape = job() if callable(job) else job
    return cache.export(module, shape, **options)


def _worker_export(args: tuple[int, ExportJob, str, dict[str, Any]]) -> tuple[int, ExportResult]:
    i, job, cache_dir, options = args
    return i, _export_job(ExportCache(cache_dir), job, options)


class ConversionPool:
    """Converts ``jobs`` into ``cache`` in order; ``wait(i)`` blocks until job i is converted.

    ``options`` are :meth:`ExportCache.export`'s (``fmt``, ``nhwc``, ``converter``). With
    ``background`` (default: ``processes > 1`` or ``cpus`` given) spawned workers pinned
    to ``cpus`` (1 torch thread each) convert ahead of the waits, e.g. on the cores a
    timing process leaves free; jobs must then be picklable. Otherwise ``wait(i)``
    converts job i in this process. Conversions count into ``cache``'s counters.
    """

    def __init__(self, jobs: Sequence[ExportJob], cache: ExportCache, options: dict[str, Any], *,
                 processes: int = 1, cpus: Sequence[int] | None = None,
                 background: bool | None = None) -> None:
        if options.get("fmt") not in FORMATS:
            raise ValueError(f"export format must be one of {FORMATS}, got {options.get('fmt')!r}")
        self.jobs, self.cache, self.options = list(jobs), cache, dict(options)
        self.results: dict[int, ExportResult] = {}
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._pool = None
        if background is None:
            background = processes > 1 or bool(cpus)
        if background and self.jobs:
            import multiprocessing as mp

            self._pool = mp.get_context("spawn").Pool(max(1, processes), initializer=_worker_init,
                                                      initargs=(list(cpus) if cpus else None,))
            payload = [(i, job, str(cache.dir), self.options) for i, job in enumerate(self.jobs)]
            threading.Thread(target=self._collect, args=(self._pool, payload), daemon=True).start()

    def _collect(self, pool: Any, payload: list) -> None:
        try:
            for i, res in pool.imap(_worker_export, payload):
                with self._cond:
                    self.results[i] = res
                    if not res.cached:
                        self.cache.conversions += 1
                        self.cache.convert_seconds += res.seconds
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced by wait()
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def wait(self, i: int) -> ExportResult:
        """Job ``i``'s export, converting it here first when there are no workers."""
        if self._pool is None:
            if i not in self.results:
                self.results[i] = _export_job(self.cache, self.jobs[i], self.options)
            return self.results[i]
        with self._cond:
            while i not in self.results and self.error is None:
                self._cond.wait(1.0)
            if i not in self.results:
                raise RuntimeError(f"conversion failed: {self.error}") from self.error
            return self.results[i]

    def close(self) -> None:
        """Stop the workers (conversions in flight are abandoned)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "ConversionPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def convert_many(
    jobs: Sequence[tuple["torch.nn.Module", Sequence[int]]],
    fmt: str,
    cache: ExportCache | None = None,
    *,
    processes: int = 1,
    cpus: Sequence[int] | None = None,
    nhwc: bool = True,
    converter: str = "direct",
) -> list[ExportResult]:
    """Export many (module, NCHW shape) jobs, skipping cached ones (a :class:`ConversionPool`).

    With ``processes > 1`` (or ``cpus`` given) conversion runs in spawned worker
    processes pinned to ``cpus``, e.g. core 0 while timing runs pinned on core 1.
    Modules must be picklable (classes importable by module path).
    """
    cache = cache or ExportCache()
    options = {"fmt": fmt, "nhwc": nhwc, "converter": converter}
    results = [cache.lookup(m, normalize_shape(s), **options) for m, s in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    with ConversionPool([jobs[i] for i in todo], cache, options, processes=processes,
                        cpus=cpus) as pool:
        for j, i in enumerate(todo):
            results[i] = pool.wait(j)
    return [r for r in results if r is not None]
