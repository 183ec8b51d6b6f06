"""Uniform random search."""
from __future__ import annotations

from .base import Controller


class RandomController(Controller):
    """Uniform random search (no state)."""

    name = "random"

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """``n`` uniform random members of the space."""
        return [tuple(int(v) for v in r) for r in self.space.sample_indices(self.rng, n)]
