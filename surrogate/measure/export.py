"""Export torch modules to .tflite and .onnx, through a content-addressed cache.

Two .tflite converters: ``direct`` (default; :mod:`.tflite_writer` writes the
flatbuffer of a :mod:`space.build` module in milliseconds) and ``litert-torch``
(the maintained PyTorch->LiteRT converter, 2-5 s per operator; the reference the
direct writer is checked against, and the one for modules the writer cannot express).

The cache key is the sha256 of the module's classes (and their ``forward``
bytecode), its structure ``repr``, the plain (non-tensor) attributes of every
submodule, its state-dict bytes, the input shape, and the
exporter's name and version. Files live at ``<cache_dir>/<key>.tflite|.onnx`` and
are written atomically (temporary file + ``os.replace``), so concurrent
processes never see a torn file and nothing is converted twice.

Shapes are always given in torch's NCHW order. The .tflite model takes NHWC
input (and gives NHWC output for rank>=3 outputs): the module is wrapped with
``litert_torch.to_channel_last_io``, whose permutes cancel against the
converter's own layout transposes, so no TRANSPOSE op is left in the graph
(checked in NOTES.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
import warnings
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from .profiles import package_version

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
    "export_for_profile",
    "convert_many",
    "TFLITE_CONVERTERS",
]

CACHE_ENV_VAR = "MNAS_CACHE_DIR"
_KEY_VERSION = "mnas-export-v2"
FORMATS = ("tflite", "onnx")
TFLITE_CONVERTERS = ("direct", "litert-torch")
ONNX_OPSET = 17


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


@contextlib.contextmanager
def _quiet_litert_torch() -> Iterator[None]:
    """Silence litert-torch's progress printer unless the user asked for it."""
    var = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(var)
    if old is None:
        os.environ[var] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)


def _sample(shape: tuple[int, ...]) -> "torch.Tensor":
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=g)


_CIA_CACHE_INSTALLED = False


def _install_cia_cache() -> None:
    """Memoise torch.export's scan for CompositeImplicitAutograd ops (conversion speed).

    ``run_decompositions`` (called several times per litert-torch conversion) rescans
    every operator namespace each time: about a fifth of a conversion's time here. The
    result only changes when operators are registered, so it is cached under a key of
    the loaded namespaces, their loaded op names and the C++ registrations. The output
    is identical by construction (checked in the tests: same .tflite bytes).
    """
    global _CIA_CACHE_INSTALLED
    if _CIA_CACHE_INSTALLED:
        return
    try:
        import torch
        import torch._export.utils as eu
        import torch.export.decomp_utils as du
        import torch.export.exported_program as ep
    except ImportError:  # pragma: no cover - other torch layouts: leave it alone
        return
    original = getattr(eu, "_collect_all_valid_cia_ops", None)
    if original is None or getattr(ep, "_collect_all_valid_cia_ops", None) is not original:
        return  # not the layout this was written for
    memo: dict = {}

    def key() -> tuple:
        names = tuple(torch.ops._dir)
        sizes = tuple(len(getattr(getattr(torch.ops, n), "_dir", ())) for n in names)
        regs = len(torch._C._dispatch_get_registrations_for_dispatch_key("CompositeImplicitAutograd"))
        return names, sizes, regs

    def cached() -> set:
        k = key()
        if k not in memo:
            memo.clear()
            memo[k] = original()
        return set(memo[k])

    cached.__wrapped__ = original  # type: ignore[attr-defined]
    for mod in (eu, ep, du):
        if getattr(mod, "_collect_all_valid_cia_ops", None) is original:
            mod._collect_all_valid_cia_ops = cached
    _CIA_CACHE_INSTALLED = True


def _write_direct(module: "torch.nn.Module", shape: tuple[int, ...], dst: Path) -> None:
    from .tflite_writer import write_tflite

    data = write_tflite(module.eval(), shape)
    with open(dst, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _convert_tflite(module: "torch.nn.Module", shape: tuple[int, ...], nhwc: bool, dst: Path) -> None:
    import torch

    try:
        import litert_torch
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(
            "converting to .tflite needs litert-torch (pip install litert-torch==0.10.0)"
        ) from exc
    _install_cia_cache()
    module = module.eval()
    x = _sample(shape)
    if nhwc and len(shape) >= 3:
        with torch.inference_mode():
            out = module(x)
        out_is_tensor = isinstance(out, torch.Tensor)
        outputs = [0] if (out_is_tensor and out.ndim >= 3) else []
        wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=outputs).eval()
        x = x.permute(0, *range(2, len(shape)), 1).contiguous()
    else:
        wrapped = module
    with _quiet_litert_torch(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        edge = litert_torch.convert(wrapped, (x,))
        edge.export(str(dst))


def _convert_onnx(module: "torch.nn.Module", shape: tuple[int, ...], opset: int, dst: Path) -> None:
    import torch

    module = module.eval()
    x = _sample(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # TorchScript exporter: needs only `onnx`, unlike dynamo=True (onnxscript).
        torch.onnx.export(
            module,
            (x,),
            str(dst),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )


class ExportCache:
    """Content-addressed store of exported models with hit/conversion counters."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.hits = 0
        self.conversions = 0
        self.convert_seconds = 0.0

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
        dst = self.path_for(key, fmt)
        if dst.is_file() and dst.stat().st_size > 0:
            self.hits += 1
            return ExportResult(dst, key, fmt, True, 0.0)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.{fmt}"
        t0 = time.perf_counter()
        try:
            if fmt == "tflite" and converter == "direct":
                _write_direct(module, shape, tmp)
            elif fmt == "tflite":
                _convert_tflite(module, shape, nhwc, tmp)
            else:
                _convert_onnx(module, shape, opset, tmp)
            os.replace(tmp, dst)
        finally:
            if tmp.exists():
                tmp.unlink()
        seconds = time.perf_counter() - t0
        self.conversions += 1
        self.convert_seconds += seconds
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


def export_for_profile(
    profile: Any, module: "torch.nn.Module", input_shape: Sequence[int], cache: ExportCache | None = None
) -> ExportResult | None:
    """Export in the format ``profile`` loads (None for torch profiles)."""
    if profile.exporter == "none":
        return None
    shape = normalize_shape(input_shape, profile.batch)
    if profile.exporter == "tflite":
        return export_tflite(module, shape, cache, nhwc=profile.layout == "NHWC",
                             converter=getattr(profile, "converter", "direct"))
    return export_onnx(module, shape, cache)


# ---------------------------------------------------------------- parallel
def _worker_init(cpus: list[int] | None) -> None:
    if cpus:
        from .pinning import pin_process

        pin_process(cpus)
    import torch

    torch.set_num_threads(1)


def _worker_export(args: tuple[str, Any, tuple[int, ...], str, bool, str]) -> ExportResult:
    cache_dir, module, shape, fmt, nhwc, converter = args
    return ExportCache(cache_dir).export(module, shape, fmt, nhwc=nhwc, converter=converter)


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
    """Export many (module, NCHW shape) jobs, skipping cached ones.

    With ``processes > 1`` (or ``cpus`` given) conversion runs in spawned worker
    processes pinned to ``cpus``, e.g. core 0 while timing runs pinned on core 1.
    Modules must be picklable (classes importable by module path).
    """
    cache = cache or ExportCache()
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
    results: list[ExportResult | None] = [None] * len(jobs)
    todo: list[int] = []
    for i, (module, shape) in enumerate(jobs):
        shape = normalize_shape(shape)
        key = cache.key(module, shape, fmt, nhwc=nhwc, converter=converter)
        p = cache.path_for(key, fmt)
        if p.is_file() and p.stat().st_size > 0:
            cache.hits += 1
            results[i] = ExportResult(p, key, fmt, True, 0.0)
        else:
            todo.append(i)
    if todo and processes <= 1 and not cpus:
        for i in todo:
            results[i] = cache.export(jobs[i][0], jobs[i][1], fmt, nhwc=nhwc, converter=converter)
    elif todo:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        payload = [(str(cache.dir), jobs[i][0], normalize_shape(jobs[i][1]), fmt, nhwc, converter)
                   for i in todo]
        with ctx.Pool(max(1, processes), initializer=_worker_init,
                      initargs=(list(cpus) if cpus else None,)) as pool:
            for i, res in zip(todo, pool.imap(_worker_export, payload)):
                results[i] = res
                if not res.cached:
                    cache.conversions += 1
                    cache.convert_seconds += res.seconds
    return [r for r in results if r is not None]
