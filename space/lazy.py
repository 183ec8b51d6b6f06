"""The one lazy-export helper (PEP 562): package names loaded on first access.

``space`` is the bottom package, so every package may use it::

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {"loop": ("Trainer", "train")})

A package that also imports names eagerly, or keeps some lazy names out of
``import *``, writes its own ``__all__`` and discards the first value.
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` serving ``{submodule: names}``.

    ``__getattr__`` imports ``package.submodule`` on first access and stores the value
    in the package, so later lookups skip the hook; an unknown name is an
    ``AttributeError``. ``__all__`` is the sorted exported names.
    """
    where = {name: mod for mod, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{where[name]}", package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return sorted(where), __getattr__, __dir__
