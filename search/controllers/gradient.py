"""Gradient-based architecture search on differentiable surrogates (FBNet / ProxylessNAS style).

The architecture distribution is one logit vector per decision of the space, laid
out in the order of the space's one-hot encoding (``space.onehot``). Each step draws
relaxed one-hots with the Gumbel-softmax (straight-through by default: the forward
pass sees exact one-hots, the gradient the soft sample; :mod:`.relaxation`), with the
temperature annealed geometrically, and maximises the relaxed MnasNet reward
``ACC(x) * (LAT(x) / T) ** w`` (:mod:`search.reward`).

The differentiable surrogates come from :mod:`surrogate.predict`: latency from
:func:`surrogate.predict.relaxed.relaxed_latency` (exact on one-hots, or distilled),
accuracy from :func:`surrogate.predict.distill.distill_accuracy` (an MLP distilled
from the accuracy objective, cached in a file).

:class:`GradientController` plugs into :func:`search.sweep.run_sweep` like the other
controllers: every ``steps`` gradient steps it decodes the argmax architecture of
each chain and proposes it through the same Optuna ask/tell, so its trials share
the study, front, plots and storage. Several chains (independent distributions)
with spread reward exponents (soft reward) or targets (hard reward) trace the
front instead of one point; a network any worker of the study has already tried is
replaced by a draw from the chain's distribution (then by a mutation), so trials are
not spent twice. Its search runs on the surrogates, so its logits are one worker's
own: they are checkpointed in the output folder (``controller.pt``), tagged with the
study, while what it learns from trials (which networks were tried) is re-read from
the study.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from space.spaces import SearchSpace

from ..reward import SOFT_EXPONENT, MnasReward
from .base import Controller, SweepContext, save_checkpoint

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .relaxation import RelaxedObjective

HORIZON = 300  # proposals over which the temperature anneals, outside a sweep


# -- settings --------------------------------------------------------------------------------
def check_positive(name: str, value: Any, integer: bool = False) -> None:
    """``ValueError`` unless ``value`` is a positive finite number (an int if ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_hyperparameters(*, steps: int = 5, lr: float = 0.1, temperature: float = 5.0,
                          temperature_end: float | None = None, chains: int = 8, samples: int = 16,
                          horizon: int | None = HORIZON, reward: str | None = "soft",
                          target_ms: float | None = None) -> float:
    """Validate the :class:`GradientController` settings (``ValueError`` naming the bad one);
    returns the final temperature (default ``min(0.5, temperature)``)."""
    check_positive("temperature", temperature)
    if temperature_end is None:
        temperature_end = min(0.5, float(temperature))
    for nm, v, integer in (("steps", steps, True), ("lr", lr, False),
                           ("temperature_end", temperature_end, False), ("chains", chains, True),
                           ("samples", samples, True), ("horizon", horizon or HORIZON, True)):
        check_positive(nm, v, integer)
    if temperature_end > temperature:
        raise ValueError(f"temperature_end ({temperature_end:g}) must be <= temperature "
                         f"({temperature:g})")
    if reward not in ("soft", "hard", None):
        raise ValueError(f"reward must be 'soft' or 'hard', got {reward!r}")
    if target_ms is not None:
        check_positive("target_ms", target_ms)
    return float(temperature_end)


def _adam_state(saved: dict, opt) -> dict:
    """``saved`` as a ``torch.optim.Adam`` state dict; checkpoints written before the
    controller used ``torch.optim`` hold ``{"m", "v", "t"}`` (same moments)."""
    import torch

    if "m" not in saved:
        return saved
    state = {i: {"step": torch.tensor(float(saved["t"])), "exp_avg": m.clone(),
                 "exp_avg_sq": v.clone()} for i, (m, v) in enumerate(zip(saved["m"], saved["v"]))}
    return {"state": state, "param_groups": opt.state_dict()["param_groups"]}


# -- the controller ---------------------------------------------------------------------------
class GradientController(Controller):
    """Relaxed gradient search (FBNet / ProxylessNAS style) on differentiable surrogates.

    ``chains`` independent per-decision logit sets, each maximising the relaxed
    reward under its own setting: for the soft reward, exponents ``w * 2**u`` with
    ``u`` evenly spaced in [-2, 2] (one chain: ``w`` itself); for the hard reward,
    targets ``T * 2**u`` with ``u`` in [-1, 1]. Every ``steps`` Adam steps (``lr``,
    ``samples`` Gumbel-softmax draws per chain, temperature annealed from
    ``temperature`` to ``temperature_end`` (default ``min(0.5, temperature)``) over
    ``horizon`` proposals) each chain's argmax architecture is proposed.

    ``accuracy`` / ``latency``: objectives (an accuracy objective to distil, a
    :class:`~search.latency.PredictedLatency`), or ready torch modules ``probs ->
    accuracy`` / ``probs -> ms`` via ``accuracy_model`` / ``latency_model``. Left None,
    the sweep fills in its objectives, trials (``horizon``), reward kind, target and a
    cache file for the distilled accuracy MLP (``model_cache``) in its output folder;
    outside a sweep ``target_ms`` None is the median latency of 1,000 random members.
    """

    name = "gradient"
    options = ("steps", "lr", "temperature", "temperature_end", "chains")

    def __init__(self, space: SearchSpace, seed: int = 0, *, accuracy=None, latency=None,
                 accuracy_model: nn.Module | None = None, latency_model: nn.Module | None = None,
                 steps: int = 5, lr: float = 0.1, temperature: float = 5.0,
                 temperature_end: float | None = None, chains: int = 8, samples: int = 16,
                 horizon: int | None = None, target_ms: float | None = None,
                 reward: str | None = None, exponent: float = SOFT_EXPONENT, hard: bool = True,
                 model_cache: str | os.PathLike | None = None):
        import torch

        super().__init__(space, seed)
        temperature_end = check_hyperparameters(
            steps=steps, lr=lr, temperature=temperature, temperature_end=temperature_end,
            chains=chains, samples=samples, horizon=horizon, reward=reward, target_ms=target_ms)
        if accuracy is not None and accuracy.space.name != space.name:
            raise ValueError(f"accuracy objective is for space {accuracy.space.name!r}, "
                             f"not {space.name!r}")
        torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a shared machine
        self.steps, self.lr, self.samples = int(steps), float(lr), int(samples)
        self.tau0, self.tau1 = float(temperature), float(temperature_end)
        self.n_chains, self.horizon = int(chains), horizon
        self.reward_kind, self.exponent, self.hard = reward, float(exponent), bool(hard)
        self.target_ms = target_ms
        self._accuracy, self._latency = accuracy, latency
        self._acc_model, self._lat_model = accuracy_model, latency_model
        self._acc_given = accuracy_model is not None
        self.model_cache = model_cache
        self.cards = [d.n for d in space.decisions]
        self.gen = torch.Generator().manual_seed(seed)
        self.logits = torch.zeros(self.n_chains, space.onehot_width, dtype=torch.float64,
                                  requires_grad=True)
        self.opt = torch.optim.Adam([self.logits], self.lr)
        self.step = 0
        self.queue: list[tuple[int, ...]] = []
        self.seen: set[tuple[int, ...]] = set()
        self.info: dict = {}
        self.objective: RelaxedObjective | None = None
        self.history: list[dict] = []  # per round: mean relaxed reward / acc / latency per chain

    @classmethod
    def check_settings(cls, options: dict, *, reward: str = "soft", target_ms: float | None = None,
                       latency: str = "predicted") -> None:
        """The hyperparameters, and a predicted latency (the search differentiates it)."""
        check_hyperparameters(**options, reward=reward, target_ms=target_ms)
        if latency != "predicted":
            raise ValueError("--controller gradient needs --latency predicted: it differentiates "
                             "the predictor")

    # -- set-up ----------------------------------------------------------------------------
    def chain_settings(self, target_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per chain (target, alpha, beta), spread around the MnasNet soft or hard reward."""
        m = self.n_chains
        u = np.linspace(-1.0, 1.0, m) if m > 1 else np.zeros(1)
        if (self.reward_kind or "soft") == "soft":
            w = self.exponent * 4.0 ** u
            return np.full(m, target_ms), w, w
        hard = MnasReward.hard(target_ms)
        return target_ms * 2.0 ** u, np.full(m, hard.alpha), np.full(m, hard.beta)

    def _ensure(self) -> RelaxedObjective:
        if self.objective is not None:
            return self.objective
        import torch

        from surrogate.predict.distill import distill_accuracy
        from surrogate.predict.relaxed import relaxed_latency

        from .relaxation import RelaxedObjective

        acc_model = self._acc_model
        if acc_model is None:
            if self._accuracy is None:
                raise ValueError("gradient controller needs an accuracy objective or accuracy_model")
            acc_model, self.info["accuracy_model"] = distill_accuracy(self._accuracy,
                                                                      cache=self.model_cache)
        lat_model = self._lat_model
        if lat_model is None:
            pred = getattr(self._latency, "predictor", None)
            if pred is None:
                raise ValueError("gradient search needs a predicted latency (a fitted predictor)")
            lat_model, self.info["latency_model"] = relaxed_latency(pred)
        if self.target_ms is None:  # the median latency of 1,000 random members
            idx = self.space.sample_indices(np.random.default_rng(0), 1000)
            if self._latency is not None:
                lat = self._latency.batch(idx)
            else:
                with torch.no_grad():
                    lat = lat_model(torch.as_tensor(self.space.onehot(idx))).numpy()
            self.target_ms = float(np.median(lat))
        self.info["target_ms"] = float(self.target_ms)
        tgt, alpha, beta = self.chain_settings(float(self.target_ms))
        self.info["chains"] = [{"target_ms": float(t), "alpha": float(a), "beta": float(b)}
                               for t, a, b in zip(tgt, alpha, beta)]
        for p in list(acc_model.parameters()) + list(lat_model.parameters()):
            p.requires_grad_(False)
        self.objective = RelaxedObjective(acc_model, lat_model, tgt, alpha, beta)
        return self.objective

    # -- the search --------------------------------------------------------------------------
    def temperature(self) -> float:
        """The Gumbel-softmax temperature at the current step (geometric annealing)."""
        total = self.steps * max(1, math.ceil((self.horizon or HORIZON) / self.n_chains))
        frac = min(1.0, self.step / total)
        return self.tau0 * (self.tau1 / self.tau0) ** frac

    def _draw(self) -> torch.Tensor:
        from .relaxation import gumbel_softmax

        return gumbel_softmax(self.logits, self.cards, self.temperature(), self.samples,
                              self.gen, self.hard)

    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Negative mean relaxed reward over Gumbel samples (``x``: given ones), summed over chains."""
        obj = self._ensure()
        r, _, _ = obj(self._draw() if x is None else x)
        return -r.mean(dim=1).sum()

    def train_round(self) -> None:
        """``steps`` Adam steps on the relaxed objective."""
        obj = self._ensure()
        for _ in range(self.steps):
            r, acc, lat = obj(self._draw())
            loss = -r.mean(dim=1).sum()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step += 1
        self.history.append({"step": self.step, "reward": r.mean(dim=1).tolist(),
                             "accuracy": acc.mean(dim=1).tolist(),
                             "latency_ms": lat.mean(dim=1).tolist()})

    def probabilities(self) -> np.ndarray:
        """Per-chain per-decision probabilities, ``(chains, onehot_width)``."""
        import torch

        from .relaxation import grouped_softmax

        with torch.no_grad():
            return grouped_softmax(self.logits, self.cards).numpy()

    def argmax(self) -> np.ndarray:
        """The most likely index vector of each chain, ``(chains, n_decisions)``."""
        return self.space.from_onehot(self.logits.detach().numpy())

    def _fresh(self, chain: int, idx: np.ndarray) -> tuple[int, ...]:
        """``idx`` canonicalised, or an unseen draw from the chain (then a mutation)."""
        import torch

        from .relaxation import grouped_softmax, padded_groups

        cand = self.space.canonical(idx)
        if cand not in self.seen:
            return cand
        with torch.no_grad():
            probs = padded_groups(grouped_softmax(self.logits[chain], self.cards), self.cards)
        cum = np.cumsum(probs.numpy(), axis=1)  # (n_decisions, max card)
        for _ in range(20):
            u = self.rng.random(len(self.cards))[:, None] * cum[:, -1:]
            draw = np.minimum((cum <= u).sum(axis=1), np.asarray(self.cards) - 1)
            c2 = self.space.canonical(draw)
            if c2 not in self.seen:
                return c2
        for _ in range(20):
            cand = self.space.mutate(cand, self.rng)
            if cand not in self.seen:
                return cand
        return cand

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """Each chain's most likely network (or a fresh draw if already seen), ``n`` in all."""
        out = []
        while len(out) < n:
            if not self.queue:
                self.train_round()
                for c, idx in enumerate(self.argmax()):
                    prop = self._fresh(c, idx)
                    self.seen.add(prop)
                    self.queue.append(prop)
            out.append(self.queue.pop(0))
        return out

    def learn(self, idx, accuracy, latency_ms, reward) -> None:
        """The search runs on the surrogates; evaluations only mark networks as seen."""
        for i in idx:
            self.seen.add(tuple(int(v) for v in i))

    # -- in a sweep ---------------------------------------------------------------------------
    def before_sweep(self, ctx: SweepContext) -> None:
        """Take the sweep's objectives and settings where none were given; resume this
        study's checkpoint in the output folder (a file of another study is left alone)."""
        self.ctx = ctx
        self._accuracy = self._accuracy if self._accuracy is not None else ctx.accuracy
        self._latency = self._latency if self._latency is not None else ctx.latency
        self.horizon = self.horizon or ctx.trials
        self.reward_kind = self.reward_kind or ctx.reward_kind
        self.target_ms = self.target_ms if self.target_ms is not None else ctx.reward.target_ms
        if self.model_cache is None:
            self.model_cache = ctx.directory / "accuracy_mlp.pt"
        state = ctx.resume_checkpoint(self.name, self.cards)
        if state is not None:
            self.restore(state, ctx.checkpoint)
        self.seen |= ctx.proposed()

    def sync(self) -> None:
        """Mark every network of the study as seen and checkpoint, tagged with the study."""
        self.seen |= self.ctx.proposed()
        save_checkpoint({**self.checkpoint_state(), "study": self.ctx.key}, self.ctx.checkpoint)

    def after_sweep(self, result) -> None:
        """The relaxed search's settings and surrogates, as ``accuracy.relaxed_search``."""
        result.accuracy["relaxed_search"] = self.info

    # -- checkpoint ------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything needed to continue exactly (tensors and plain values)."""
        obj = self.objective
        return {"controller": self.name, "cards": self.cards, "chains": self.n_chains,
                "logits": self.logits.detach().clone(), "opt": self.opt.state_dict(),
                "step": self.step, "queue": list(self.queue), "seen": sorted(self.seen),
                "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                "target_ms": self.target_ms, "info": self.info, "history": self.history,
                "accuracy_model": None if obj is None or self._acc_given
                else obj.accuracy.state_dict(),
                "accuracy_hidden": None if obj is None else getattr(obj.accuracy, "hidden", None)}

    def restore(self, state: dict, source: str | os.PathLike) -> None:
        """Take over ``state`` (read from ``source``), the distilled accuracy model included."""
        import torch

        from surrogate.predict.distill import DistilledMLP

        if state["chains"] != self.n_chains:
            raise ValueError(f"checkpoint {source} has {state['chains']} chains, not {self.n_chains}")
        if state["accuracy_model"] is not None and self._acc_model is None:
            m = DistilledMLP(self.space.onehot_width, tuple(state["accuracy_hidden"]))
            m.load_state_dict(state["accuracy_model"])
            m.eval()
            self._acc_model = m
        self.target_ms = state["target_ms"]
        self.info = dict(state["info"])
        acc_info = self.info.get("accuracy_model")
        self._ensure()
        if acc_info is not None:
            self.info["accuracy_model"] = acc_info
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.opt.load_state_dict(_adam_state(state["opt"], self.opt))
        self.step = state["step"]
        self.queue = [tuple(q) for q in state["queue"]]
        self.seen = {tuple(s) for s in state["seen"]}
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state["history"])
