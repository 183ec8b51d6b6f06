"""Search spaces, one class each with the interface of :class:`SearchSpace`."""
from __future__ import annotations

from typing import Callable

from .anb import AnbSpace
from .base import Decision, SearchSpace
from .fbnet import FBNetSpace
from .macro import MacroSpace
from .mnasnet import MnasNetSpace, mnasnet_paper_space, mnasnet_space
from .ofa import OFAMobileNetV3Space, ofa_mbv3_space, ofa_mbv3_w12_space

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {
    "mnasnet": mnasnet_space,
    "mnasnet-paper": mnasnet_paper_space,
    "anb": AnbSpace,
    "fbnet": FBNetSpace,
    "nasbench-macro": MacroSpace,
    "ofa-mbv3": ofa_mbv3_space,
    "ofa-mbv3-w1.2": ofa_mbv3_w12_space,
}
_INSTANCES: dict[str, SearchSpace] = {}


def space_names() -> list[str]:
    """Names accepted by :func:`get_space`."""
    return list(_FACTORIES)


def get_space(name: str) -> SearchSpace:
    """A search space by name (``ValueError`` lists the known names)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown search space {name!r}; expected one of {', '.join(_FACTORIES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


__all__ = ["AnbSpace", "Decision", "FBNetSpace", "MacroSpace", "MnasNetSpace",
           "OFAMobileNetV3Space", "SearchSpace", "get_space", "space_names"]
