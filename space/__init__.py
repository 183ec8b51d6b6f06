"""mnas-surrogate search spaces: architectures, block strings, counts, model building.

Light to import (no torch): the builders of :mod:`space.build` load torch
(:mod:`space.modules`) on first call.
"""
from __future__ import annotations

from .arch import Arch, Block, LayerConfig, make_divisible, scale_width
from .blockstring import format_arch, format_block, parse_arch, parse_block
from .build import build_layer, build_model, build_op, input_shape
from .counting import Counts, count, count_madds, count_params
from .reference import (REFERENCE, get_reference, parse_variant, reference_names, resolve_arch,
                        variant, variant_name)
from .spaces import SearchSpace, get_space, space_names

__version__ = "0.1.0"

__all__ = [
    "Arch", "Block", "Counts", "LayerConfig", "REFERENCE", "SearchSpace", "count",
    "count_madds", "count_params", "format_arch", "format_block", "get_reference", "get_space",
    "make_divisible", "parse_arch", "parse_block", "parse_variant", "reference_names",
    "resolve_arch", "scale_width", "space_names", "variant", "variant_name", "build_model", "build_layer",
    "build_op", "input_shape",
]

