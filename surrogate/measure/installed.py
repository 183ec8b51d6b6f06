"""What is installed here: distribution versions and importable modules, without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util

__all__ = ["package_version", "has_module", "litert_interpreter_module"]


def package_version(dist: str) -> str | None:
    """Installed version of distribution ``dist`` (no import), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def has_module(name: str) -> bool:
    """Whether module ``name`` can be imported (it is found; nothing is imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def litert_interpreter_module() -> tuple[str, str | None]:
    """Which LiteRT interpreter package is importable: (module, version).

    Prefers ``ai_edge_litert.interpreter``; falls back to the older
    ``tflite_runtime.interpreter``. Returns ("", None) when neither exists.
    """
    if has_module("ai_edge_litert"):
        return "ai_edge_litert.interpreter", package_version("ai-edge-litert")
    if has_module("tflite_runtime"):
        return "tflite_runtime.interpreter", package_version("tflite-runtime")
    return "", None
