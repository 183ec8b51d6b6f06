"""The MnasNet controller: an LSTM policy over the decisions, trained with PPO.

In a sweep the policy is shared by every worker of the study through state files
named by the study and by how many trials the policy has learned from
(:meth:`~search.controllers.base.SweepContext.save_state`). Before learning, a worker
adopts the newest file if it holds more than its own policy; it then learns from
every COMPLETE trial of the study not yet consumed (the consumed trial numbers travel
in the file) and writes the result. Two workers that learn at once each write a
file; the newest wins, and the trials only the other one consumed are learned later.
"""
from __future__ import annotations

import os

import numpy as np

from space.spaces import SearchSpace

from .base import Controller, SweepContext


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
        self.consumed: set[int] = set()  # trial numbers of the study learned from (in a sweep)

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

    def learn(self, idx, accuracy, latency_ms, reward) -> None:
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
        for r in rewards.tolist():  # moving-average baseline
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

    # -- shared with the other workers of the study ----------------------------------------
    def before_sweep(self, ctx: SweepContext) -> None:
        """Attach; a policy checkpointed in the output folder before state files were named
        by study is adopted when the study already has trials (they count as learned)."""
        self.ctx = ctx
        if ctx.newest_state(self.name, self.cards) is None:
            old = ctx.resume_checkpoint(self.name, self.cards)
            if old is not None:
                self.restore(old, ctx.checkpoint)
                self.consumed = set(ctx.complete().numbers)
        self.sync()

    def sync(self) -> None:
        """Adopt the newest shared policy if it learned from more trials than this one, learn
        from the study's COMPLETE trials not yet consumed, and share the result."""
        newest = self.ctx.newest_state(self.name, self.cards, above=len(self.consumed))
        if newest is not None:
            self.restore(newest, rng=False)  # this worker keeps its own sampling streams
        new = self.ctx.complete(skip=self.consumed)
        if not new.numbers:
            return
        self.learn(new.idx, new.accuracy, new.latency_ms, new.reward)
        self.consumed.update(new.numbers)
        self.ctx.save_state(self.name, len(self.consumed), self.checkpoint_state())

    # -- checkpoint ----------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything needed to continue exactly (tensors and plain values)."""
        return {"controller": self.name, "modules": self.modules_.state_dict(),
                "start": self.start.detach().clone(), "opt": self.opt.state_dict(),
                "baseline": self.baseline, "updates": self.updates,
                "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                "pending": [(c[0].tolist(), c[1], c[2]) for c in self.pending],
                "consumed": sorted(self.consumed), "cards": self.cards}

    def restore(self, state: dict, source: str | os.PathLike = "", rng: bool = True) -> None:
        """Take over ``state``; ``rng`` False keeps this worker's own sampling streams."""
        import torch

        self.modules_.load_state_dict(state["modules"])
        with torch.no_grad():
            self.start.copy_(state["start"])
        self.opt.load_state_dict(state["opt"])
        self.baseline, self.updates = state["baseline"], state["updates"]
        if rng:
            self.gen.set_state(state["gen"])
            self.rng.bit_generator.state = state["rng"]
        self.pending = [(torch.as_tensor(t, dtype=torch.long), lp, r) for t, lp, r in state["pending"]]
        self.consumed = set(state.get("consumed", ()))
