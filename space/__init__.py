"""mnas-surrogate search spaces: architectures, block strings, counts, model building.

Light to import (no torch): torch is loaded only by :mod:`space.modules`, which the
builders of :mod:`space.build` import on first use.
"""
from __future__ import annotations

from .arch import Arch, Block, LayerConfig, make_divisible, scale_width
from .blockstring import format_arch, format_block, parse_arch, parse_block
from .counting import Counts, count, count_madds, count_params
from .reference import REFERENCE, get_reference, reference_names, resolve_arch
from .spaces import SearchSpace, get_space, space_names

__version__ = "0.1.0"

__all__ = [
    "Arch", "Block", "Counts", "LayerConfig", "REFERENCE", "SearchSpace", "count",
    "count_madds", "count_params", "format_arch", "format_block", "get_reference", "get_space",
    "make_divisible", "parse_arch", "parse_block", "reference_names", "resolve_arch",
    "scale_width", "space_names",
]
