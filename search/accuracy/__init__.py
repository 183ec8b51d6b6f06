"""Accuracy objectives behind one interface, cached by canonical architecture, and their registry.

Every objective has a ``name``, a search ``space``, ``__call__(arch) -> float``
(accuracy as a fraction in [0, 1]) and ``batch(archs) -> np.ndarray``. An ``arch``
is a :class:`space.Arch`, an architecture string or reference name, or an index
vector of the space. Results are cached in memory by the canonical string
``format_arch(space.to_arch(space.from_arch(arch)))`` and, optionally, in a
JSON-lines file shared across runs (``cache_path``, a :class:`JsonlCache`).

Modules
-------
``base``
    :class:`AccuracyObjective`, the one cache :class:`JsonlCache`, benchmark lookup.
``anb``
    :class:`AnbAccuracy`: the shipped XGBoost surrogate of Accel-NASBench
    ``val_top1`` (ImageNet top-1, 16-epoch proxy); :func:`fit_anb_accuracy`
    re-creates it from the benchmark CSV.
``macro``
    :class:`MacroAccuracy`: exact NAS-Bench-Macro mean test accuracy (CIFAR-10).
``ofa``
    :class:`OFAAccuracy`: Once-for-All's published ImageNet accuracy predictor (an MLP
    state dict the user gives, ``ofa/acc_predictor.pth`` of ``han-cai/files``) on the
    ``ofa-mbv3-w1.2`` space.
``proxy``
    ``proxy-train``: real short training (``search.train.proxy``; needs ``data``
    and torch, so it is imported on first use).

Benchmark files are never copied; they are read from a path the user gives (a
file, or a benchmarks folder with ``accel_nasbench/`` and ``nas_bench_macro/``),
or from ``$MNAS_BENCHMARKS_DIR``.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from space.lazy import lazy_exports

from .anb import (ANB_ANCHOR, ANB_DEFAULT_SEED, ANB_FILE, ANB_META_NAME, ANB_MODEL_NAME,
                  ANB_SPLIT_FRACTIONS, ANB_SUBDIR, ANB_XGB_PARAMS, META_FORMAT, AnbAccuracy,
                  anb_feature_spec, anb_features, anb_split, fit_anb_accuracy, load_anb_csv,
                  load_anb_meta, package_data_dir, regression_metrics, train_anb_xgb)
from .base import ENV_BENCHMARKS, AccuracyObjective, ArchLike, JsonlCache, resolve_benchmark_file
from .macro import MACRO_FILE, MACRO_SUBDIR, MacroAccuracy
from .ofa import OFA_FILE, OFA_SUBDIR, OFAAccuracy

#: names of ``search.accuracy.proxy`` (torch) served on first access
_PROXY_NAMES = ("DEFAULT_CACHE_DIR", "ProxyTrainAccuracy", "proxy_accuracy", "proxy_cache_path")


# -- registry ------------------------------------------------------------------------------------
def _proxy_train(data: Any = None, **kw: Any) -> AccuracyObjective:
    if data is None:
        raise ValueError("accuracy 'proxy-train' needs --data (the training data set, an image "
                         "folder with train/) for the short runs of search.train.proxy")
    from .proxy import ProxyTrainAccuracy  # torch: loaded only when asked for

    return ProxyTrainAccuracy(data, **kw)


def _anb(data: Any = None, model_path: str | os.PathLike | None = None,
         cache_path: str | os.PathLike | None = None, verify: bool = True) -> AnbAccuracy:
    # `data` is accepted for a uniform CLI; the shipped surrogate does not read it
    return AnbAccuracy(model_path, cache_path, verify=verify)


def _macro(data: Any = None, json_path: str | os.PathLike | None = None,
           cache_path: str | os.PathLike | None = None) -> MacroAccuracy:
    return MacroAccuracy(json_path if json_path is not None else data, cache_path)


def _ofa(data: Any = None, accuracy_file: str | os.PathLike | None = None,
         cache_path: str | os.PathLike | None = None, image_sizes: Any = None,
         space: str = "ofa-mbv3-w1.2") -> OFAAccuracy:
    # the predictor file: accuracy_file (--accuracy-file), else data (--data)
    return OFAAccuracy(accuracy_file if accuracy_file is not None else data, cache_path,
                       image_sizes=image_sizes, space=space)


_REGISTRY: dict[str, Callable[..., AccuracyObjective]] = {
    "anb": _anb,
    "macro": _macro,
    "ofa": _ofa,
    "proxy-train": _proxy_train,
}


def accuracy_names() -> list[str]:
    """Names accepted by :func:`get_accuracy`."""
    return list(_REGISTRY)


def register_accuracy(name: str, factory: Callable[..., AccuracyObjective]) -> None:
    """Register (or replace) an accuracy objective factory under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"accuracy name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable")
    _REGISTRY[name] = factory


def get_accuracy(name: str, **kw: Any) -> AccuracyObjective:
    """An accuracy objective by name: ``'anb'`` (model_path, cache_path), ``'macro'``
    (json_path or data, cache_path), ``'ofa'`` (accuracy_file or data, cache_path,
    image_sizes, space), ``'proxy-train'`` (data, ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown accuracy {name!r}; expected one of {', '.join(_REGISTRY)}")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(**kw)
    except TypeError as exc:
        raise ValueError(f"accuracy {name!r}: {exc}") from None
    except ValueError:  # pragma: no cover - callables without a signature
        pass
    return factory(**kw)


_, __getattr__, __dir__ = lazy_exports(__name__, {"proxy": _PROXY_NAMES})

__all__ = [
    "ANB_ANCHOR", "ANB_DEFAULT_SEED", "ANB_FILE", "ANB_META_NAME", "ANB_MODEL_NAME",
    "ANB_SPLIT_FRACTIONS", "ANB_SUBDIR", "ANB_XGB_PARAMS", "ENV_BENCHMARKS", "MACRO_FILE",
    "MACRO_SUBDIR", "META_FORMAT", "OFA_FILE", "OFA_SUBDIR", "AccuracyObjective", "AnbAccuracy",
    "ArchLike", "JsonlCache", "MacroAccuracy", "OFAAccuracy", "accuracy_names",
    "anb_feature_spec", "anb_features", "anb_split", "fit_anb_accuracy", "get_accuracy",
    "load_anb_csv", "load_anb_meta", "package_data_dir", "register_accuracy",
    "regression_metrics", "resolve_benchmark_file", "train_anb_xgb",
]  # the proxy names are left out, so that ``import *`` does not load torch
