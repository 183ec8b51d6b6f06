"""Regularised (aging) evolution, Real et al. 2019, on the MnasNet reward."""
from __future__ import annotations

from collections import deque

import numpy as np

from space.spaces import SearchSpace

from .base import Controller


class EvolutionController(Controller):
    """Regularised (aging) evolution, Real et al. 2019, on the MnasNet reward.

    Population of the ``population`` most recent evaluations; each child mutates
    the best of ``sample`` random members; the oldest member leaves. In a sweep the
    population is re-read from the study's COMPLETE trials (its ``population`` highest
    numbers, every worker's) each time a generation is sampled, so nothing is kept
    outside the study.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population: int = 50, sample: int = 10):
        super().__init__(space, seed)
        if population < 2 or not 1 <= sample <= population:
            raise ValueError("need population >= 2 and 1 <= sample <= population")
        self.population_size, self.sample = population, sample
        self.population: deque = deque(maxlen=population)

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """Tournament pick from the population, mutated once (random until the population is full)."""
        if self.ctx is not None:  # a new generation: the study's most recent COMPLETE trials
            self.population.clear()
            self.learn(*self.ctx.complete(last=self.population_size)[1:])
        out = []
        for _ in range(n):
            if len(self.population) < self.population_size:
                out.append(tuple(int(v) for v in self.space.sample_indices(self.rng, 1)[0]))
                continue
            members = list(self.population)
            pick = self.rng.choice(len(members), size=self.sample, replace=False)
            parent = max((members[i] for i in pick), key=lambda m: m[1])[0]
            out.append(self.space.mutate(parent, self.rng))
        return out

    def learn(self, idx, accuracy, latency_ms, reward) -> None:
        """Add the evaluated networks to the population, ageing out the oldest."""
        for i, r in zip(idx, np.asarray(reward, dtype=float)):
            self.population.append((tuple(int(v) for v in i), float(r)))
