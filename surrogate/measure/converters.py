"""The converters behind :class:`.export.ExportCache`: each writes one model file.

``direct`` writes a :mod:`space.build` module's .tflite flatbuffer (:mod:`.tflite_writer`);
``litert-torch`` converts through the maintained PyTorch->LiteRT converter (NHWC
input/output via ``litert_torch.to_channel_last_io``); ONNX goes through the TorchScript
exporter. All take NCHW shapes and a destination path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["install_cia_cache", "write_direct", "convert_tflite", "convert_onnx"]


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


def install_cia_cache() -> None:
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


def write_direct(module: "torch.nn.Module", shape: tuple[int, ...], dst: Path) -> None:
    """Write ``module``'s .tflite with the direct writer (NHWC graph)."""
    from .tflite_writer import write_tflite

    dst.write_bytes(write_tflite(module.eval(), shape))


def convert_tflite(module: "torch.nn.Module", shape: tuple[int, ...], nhwc: bool, dst: Path) -> None:
    """Convert ``module`` to .tflite with litert-torch (NHWC input/output when ``nhwc``)."""
    import torch

    try:
        import litert_torch
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(
            "converting to .tflite needs litert-torch (pip install litert-torch==0.10.0)"
        ) from exc
    install_cia_cache()
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


def convert_onnx(module: "torch.nn.Module", shape: tuple[int, ...], opset: int, dst: Path) -> None:
    """Export ``module`` to ONNX with the TorchScript exporter at ``opset``."""
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
