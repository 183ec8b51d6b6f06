"""Architecture -> ``torch.nn.Module``: seeded builders over :mod:`space.modules`.

``import space`` stays free of torch: the module classes live in
:mod:`space.modules` (which imports torch) and are loaded by the builders here on
first use. Shapes (:func:`input_shape`, :func:`op_input_shape`) need no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .arch import Arch, LayerConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _modules():
    """:mod:`space.modules`, imported on first use (it needs torch)."""
    try:
        from . import modules
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("building models needs torch: pip install 'mnas-surrogate[torch]'") from exc
    return modules


def _seeded(make, init_seed: int | None):
    """``init_weights(make())`` under ``init_seed`` without touching the global RNG."""
    mods = _modules()
    if init_seed is None:
        return mods.init_weights(make())
    with mods.torch.random.fork_rng(devices=[]):
        mods.torch.manual_seed(init_seed)
        return mods.init_weights(make())


def build_model(arch: Arch, *, init_seed: int | None = 0) -> "torch.nn.Module":
    """A :class:`space.modules.Net` for ``arch`` (eval-ready; call ``.train()`` to train).

    ``init_seed`` makes weight initialisation reproducible without touching the
    global RNG state; ``None`` uses the global RNG.
    """
    if not isinstance(arch, Arch):
        raise ValueError(f"build_model expects an Arch, got {type(arch).__name__}")
    return _seeded(lambda: _modules().Net(arch), init_seed)


def build_layer(lc: LayerConfig, *, init_seed: int | None = 0) -> "torch.nn.Module":
    """One layer as a module taking ``(1, in_ch, h, w)``; what op tables time."""
    return _seeded(lambda: _modules().Layer(lc), 0 if init_seed is None else init_seed)


def build_op(lc: LayerConfig, *, init_seed: int = 0) -> "torch.nn.Module":
    """Any operator configuration (``stem``, ``head`` or a layer) as a module."""
    mods = _modules()
    cls = {"stem": mods.Stem, "head": mods.head_module}.get(lc.op, mods.Layer)
    return _seeded(lambda: cls(lc), init_seed)


def input_shape(arch: Arch, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape of ``arch``."""
    return (batch, arch.in_ch, arch.resolution, arch.resolution)


def op_input_shape(lc: LayerConfig, batch: int = 1) -> tuple[int, int, int, int]:
    """NCHW input shape of one operator configuration."""
    return (batch, lc.in_ch, lc.h, lc.w)
