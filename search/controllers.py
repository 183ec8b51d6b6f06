"""Search controllers that propose architectures for a sweep: random search,
regularised evolution and the MnasNet PPO controller (and, in :mod:`search.gradient`,
the relaxed gradient search).

A controller proposes canonical index vectors (``propose(n)``) and learns from
their results (``observe(idx, accuracy, latency_ms, reward)``). The sweep sends
every proposal through Optuna's ask/tell (an enqueued trial), so controller trials
share storage, plots and Pareto front with Optuna's own samplers.
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import numpy as np

from space.spaces import SearchSpace


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a controller checkpoint atomically (temporary file, then rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, controller: str, cards) -> dict | None:
    """The checkpoint at ``path`` (None if absent), checked to be ``controller``'s for this space."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    owner = state.get("controller", "ppo") if isinstance(state, dict) else None
    if owner != controller:
        raise ValueError(f"checkpoint {path} belongs to the {owner!r} controller, not {controller!r}")
    if state.get("cards") != cards:
        raise ValueError(f"checkpoint {path} belongs to another space (decisions differ)")
    return state


class Controller:
    """Interface; ``name`` identifies it in study attributes."""

    name = "controller"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.rng = np.random.default_rng(seed)

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """The next ``n`` architectures to evaluate, as decision-index tuples."""
        raise NotImplementedError

    def observe(self, idx, accuracy, latency_ms, reward) -> None:
        """Learn from evaluated proposals (arrays aligned with ``idx``)."""

    def warm_start(self, idx, accuracy, latency_ms, reward) -> None:
        """Rebuild state from trials already in the study (on resume)."""
        self.observe(idx, accuracy, latency_ms, reward)

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint (no-op for controllers whose state comes from the study)."""

    def load(self, path: str | os.PathLike) -> bool:
        """Restore state from a checkpoint; False when there is none (stateless here)."""
        return False


class RandomController(Controller):
    """Uniform random search."""

    name = "random"

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """``n`` uniform random members of the space."""
        return [tuple(int(v) for v in r) for r in self.space.sample_indices(self.rng, n)]


class EvolutionController(Controller):
    """Regularised (aging) evolution, Real et al. 2019, on the MnasNet reward.

    Population of the ``population`` most recent evaluations; each child mutates
    the best of ``sample`` random members; the oldest member leaves.
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

    def observe(self, idx, accuracy, latency_ms, reward) -> None:
        """Add the evaluated networks to the population, ageing out the oldest."""
        for i, r in zip(idx, np.asarray(reward, dtype=float)):
            self.population.append((tuple(int(v) for v in i), float(r)))


class PPOController(Controller):
    """The MnasNet controller: an LSTM emits one token per decision; trained with
    PPO (clipped objective, entropy bonus, moving-average reward baseline).
    """

    name = "ppo"

    def __init__(self, space: SearchSpace, seed: int = 0, hidden: int = 64, lr: float = 3.5e-4,
                 clip: float = 0.2, entropy: float = 1e-3, baseline_decay: float = 0.95,
                 ppo_epochs: int = 4, batch: int = 16):
        import torch
        from torch import nn

        super().__init__(space, seed)
        # tiny tensors: one thread is fastest, and spinning OpenMP threads on a busy
        # machine made updates 100x slower
        torch.set_num_threads(1)
        self.clip, self.entropy_coef, self.decay = clip, entropy, baseline_decay
        self.ppo_epochs, self.batch = ppo_epochs, batch
        self.cards = [d.n for d in space.decisions]
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.embed = nn.ModuleList([nn.Embedding(c, hidden) for c in self.cards])
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList([nn.Linear(hidden, c) for c in self.cards])
        self.modules_ = nn.ModuleList([self.embed, self.cell, self.heads])
        params = list(self.modules_.parameters()) + [self.start]
        self.opt = torch.optim.Adam(params, lr=lr)
        self.baseline: float | None = None
        self.pending: list = []  # (tokens, old_logp, reward)
        self.updates = 0

    # -- the policy --------------------------------------------------------------------
    def _run(self, tokens=None, n: int = 1):
        """Sample (tokens None) or score given tokens; returns tokens, log-prob, entropy."""
        import torch

        if tokens is not None:
            n = tokens.shape[0]
        h = torch.zeros(n, self.start.shape[1])
        c = torch.zeros_like(h)
        x = self.start.expand(n, -1)
        out, logp, ent = [], torch.zeros(n), torch.zeros(n)
        for j, _ in enumerate(self.cards):
            h, c = self.cell(x, (h, c))
            dist = torch.distributions.Categorical(logits=self.heads[j](h))
            if tokens is None:
                probs = dist.probs.detach()
                t = torch.multinomial(probs, 1, generator=self.gen)[:, 0]
            else:
                t = tokens[:, j]
            out.append(t)
            logp = logp + dist.log_prob(t)
            ent = ent + dist.entropy()
            x = self.embed[j](t)
        return torch.stack(out, dim=1), logp, ent

    def probabilities(self) -> list[np.ndarray]:
        """Marginal token distribution of each decision under greedy previous tokens."""
        import torch

        with torch.no_grad():
            h = torch.zeros(1, self.start.shape[1])
            c = torch.zeros_like(h)
            x = self.start
            out = []
            for j, _ in enumerate(self.cards):
                h, c = self.cell(x, (h, c))
                p = torch.softmax(self.heads[j](h), dim=1)
                out.append(p[0].numpy())
                x = self.embed[j](p.argmax(dim=1))
        return out

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """Sample ``n`` architectures from the RNN policy, one token per decision."""
        import torch

        with torch.no_grad():
            tokens, logp, _ = self._run(n=n)
        self._last = {tuple(int(v) for v in t): (t, float(lp)) for t, lp in zip(tokens, logp)}
        return [tuple(int(v) for v in t) for t in tokens]

    def observe(self, idx, accuracy, latency_ms, reward) -> None:
        """Record rewards; every ``batch`` rollouts run clipped PPO epochs with an entropy bonus."""
        import torch

        for i, r in zip(idx, np.asarray(reward, dtype=float)):
            key = tuple(int(v) for v in i)
            if key in getattr(self, "_last", {}):
                t, lp = self._last[key]
            else:  # a trial another worker or the sampler produced: score it under the policy
                t = torch.as_tensor(key, dtype=torch.long)
                with torch.no_grad():
                    lp = float(self._run(t[None, :])[1][0])
            self.pending.append((t, lp, float(r)))
        while len(self.pending) >= self.batch:
            chunk, self.pending = self.pending[: self.batch], self.pending[self.batch:]
            self._update(chunk)

    def _update(self, chunk) -> None:
        import torch

        tokens = torch.stack([c[0] for c in chunk])
        old = torch.as_tensor([c[1] for c in chunk])
        rewards = np.array([c[2] for c in chunk])
        for r in rewards:  # moving-average baseline
            self.baseline = r if self.baseline is None else self.decay * self.baseline + (1 - self.decay) * r
        adv = torch.as_tensor(rewards - self.baseline, dtype=torch.float32)
        if adv.abs().max() > 0:
            adv = adv / (adv.std() + 1e-8) if len(adv) > 1 else adv
        for _ in range(self.ppo_epochs):
            _, logp, ent = self._run(tokens)
            ratio = torch.exp(logp - old)
            surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - self.clip, 1 + self.clip) * adv)
            loss = -(surrogate.mean() + self.entropy_coef * ent.mean())
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.updates += 1

    def warm_start(self, idx, accuracy, latency_ms, reward) -> None:
        """On resume the policy comes from the checkpoint; only the baseline is rebuilt."""
        for r in np.asarray(reward, dtype=float):
            self.baseline = r if self.baseline is None else self.decay * self.baseline + (1 - self.decay) * r

    # -- checkpoint ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint policy, optimiser, baseline, RNG states and pending rollouts."""
        save_checkpoint({"controller": self.name, "modules": self.modules_.state_dict(),
                         "start": self.start.detach().clone(), "opt": self.opt.state_dict(),
                         "baseline": self.baseline, "updates": self.updates,
                         "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                         "pending": [(c[0].tolist(), c[1], c[2]) for c in self.pending],
                         "cards": self.cards}, path)

    def load(self, path: str | os.PathLike) -> bool:
        """Restore from :meth:`save`'s file; False if there is none."""
        import torch

        state = load_checkpoint(path, self.name, self.cards)
        if state is None:
            return False
        self.modules_.load_state_dict(state["modules"])
        with torch.no_grad():
            self.start.copy_(state["start"])
        self.opt.load_state_dict(state["opt"])
        self.baseline, self.updates = state["baseline"], state["updates"]
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.pending = [(torch.as_tensor(t, dtype=torch.long), lp, r) for t, lp, r in state["pending"]]
        return True


CONTROLLERS = {"random": RandomController, "evolution": EvolutionController, "ppo": PPOController}


def make_controller(name: str, space: SearchSpace, seed: int = 0, **kw) -> Controller:
    """A controller by name: ``random``, ``evolution``, ``ppo`` or ``gradient``
    (:class:`search.gradient.GradientController`, imported on demand)."""
    if name == "gradient":
        from .gradient import GradientController

        return GradientController(space, seed=seed, **kw)
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; expected one of {', '.join(CONTROLLERS)}, gradient")
    return CONTROLLERS[name](space, seed=seed, **kw)
