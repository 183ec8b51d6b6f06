"""Gradient-based architecture search on differentiable surrogates (FBNet / ProxylessNAS style).

The architecture distribution is one logit vector per decision of the space, laid
out in the order of the space's one-hot encoding (``space.onehot``), so a relaxed
architecture is a ``(n, space.onehot_width)`` tensor of per-decision probability
vectors. Each step draws relaxed one-hots with the Gumbel-softmax (straight-through
by default: the forward pass sees exact one-hots, the gradient the soft sample),
with the temperature annealed geometrically, and maximises the relaxed MnasNet
reward ``ACC(x) * (LAT(x) / T) ** w`` (:mod:`search.reward`).

- Latency: :func:`relaxed_latency` turns the shipped (or any saved) latency
  predictor into a torch module that equals ``predictor.predict`` on one-hots: the
  expected operator-table sum (:class:`~surrogate.predict.differentiable.ExpectedTableLatency`)
  for a TableSum, :class:`~surrogate.predict.differentiable.RelaxedMLP` for an
  encoding-only MLP, and :class:`RelaxedFeatures` (the expected table, count and
  encoding features) under a ridge or MLP head for the learned and residual models.
  Other models (XGBoost) are distilled into an MLP on log latency.
- Accuracy: :func:`distill_accuracy` fits a small MLP on the one-hot encoding to an
  accuracy objective's predictions on random members of the space (for ``anb`` the
  shipped XGBoost surrogate, so the search stays offline); its Kendall tau against
  the teacher on held-out members is reported and the model is cached in a file.

:class:`GradientController` plugs into :func:`search.sweep.run_sweep` like the other
controllers: every ``steps`` gradient steps it decodes the argmax architecture of
each chain and proposes it through the same Optuna ask/tell, so its trials share
the study, front, plots and storage. Several chains (independent distributions)
with spread reward exponents (soft reward) or targets (hard reward) trace the
front instead of one point; an argmax already evaluated is replaced by a draw from
the chain's distribution (then by a mutation), so trials are not spent twice.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from space.spaces import SearchSpace
from surrogate.predict.differentiable import joint_probs

from .controllers import Controller, load_checkpoint, save_checkpoint

#: distillation defaults (teacher predictions on random members of the space)
DISTILL_SAMPLES = 16_000
DISTILL_HELDOUT = 2_000
DISTILL_HIDDEN = (128, 128)
DISTILL_EPOCHS = 15
CACHE_FORMAT = 1


# -- small helpers --------------------------------------------------------------------
def _raw_samples(space: SearchSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` index vectors drawn uniformly per decision (not canonicalised)."""
    return np.stack([rng.integers(0, d.n, size=n) for d in space.decisions], axis=1).astype(np.int64)


def _canonical(space: SearchSpace, idx: np.ndarray) -> np.ndarray:
    return np.array([space.canonical(r) for r in idx], dtype=np.int64).reshape(len(idx), -1)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


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
                          horizon: int = 300, reward: str = "soft",
                          target_ms: float | None = None) -> float:
    """Validate the :class:`GradientController` settings (``ValueError`` naming the bad one);
    returns the final temperature (default ``min(0.5, temperature)``)."""
    check_positive("temperature", temperature)
    if temperature_end is None:
        temperature_end = min(0.5, float(temperature))
    for nm, v, integer in (("steps", steps, True), ("lr", lr, False),
                           ("temperature_end", temperature_end, False), ("chains", chains, True),
                           ("samples", samples, True), ("horizon", horizon, True)):
        check_positive(nm, v, integer)
    if temperature_end > temperature:
        raise ValueError(f"temperature_end ({temperature_end:g}) must be <= temperature "
                         f"({temperature:g})")
    if reward not in ("soft", "hard"):
        raise ValueError(f"reward must be 'soft' or 'hard', got {reward!r}")
    if target_ms is not None:
        check_positive("target_ms", target_ms)
    return float(temperature_end)


# -- differentiable latency -------------------------------------------------------------
class RelaxedFeatures(nn.Module):
    """The :class:`~surrogate.predict.features.ArchFeatures` of a relaxed architecture.

    Every count and table feature is its expectation under independent per-decision
    distributions (input widths carried as a distribution from position to
    position, as in ``ExpectedTableLatency``); log features take the log of the
    expectation. On one-hot inputs the output equals ``features.transform`` exactly.
    ``forward`` returns ``(features (n, n_features), expected table sum (n,))``.
    """

    def __init__(self, features, dtype: torch.dtype = torch.float64):
        super().__init__()
        compiled = features.compiled_
        self.space = features.space_
        self.parts = tuple(features.parts)
        self.n_features = len(features.feature_names_out_)
        self.use_table = "table" in self.parts
        if self.use_table:
            missing = compiled.missing_ops()
            if missing:
                raise ValueError(f"the table lacks {len(missing)} operator(s) of space "
                                 f"{self.space.name!r} (e.g. {missing[0].key()})")
        self.cards = [p.cards for p in compiled.positions]
        self.n_positions = len(compiled.positions)
        for i, p in enumerate(compiled.positions):
            lat = p.lat if self.use_table else np.zeros_like(p.madds)
            terms = np.stack([lat, p.madds, p.params, p.n_layers, p.act_elems], axis=-1)
            self.register_buffer(f"terms{i}", torch.as_tensor(terms, dtype=dtype))
            n_next = (len(compiled.positions[i + 1].in_widths) if i + 1 < self.n_positions
                      else len(compiled.head_ms))
            trans = np.zeros(p.nxt.shape + (n_next,))
            ii, cc = np.indices(p.nxt.shape)
            trans[ii, cc, p.nxt] = 1.0
            self.register_buffer(f"trans{i}", torch.as_tensor(trans, dtype=dtype))
        head_ms = compiled.head_ms if self.use_table else np.zeros_like(compiled.head_madds)
        self.register_buffer("head", torch.as_tensor(
            np.stack([head_ms, compiled.head_madds, compiled.head_params], axis=1), dtype=dtype))
        self.stem_ms = float(compiled.stem_ms) if self.use_table else 0.0
        self.stem_madds, self.stem_params = (float(v) for v in compiled.stem_counts)
        self.dtype = dtype

    def forward(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected features and table sum of relaxed architectures ``probs`` (n, onehot_width)."""
        if probs.dim() == 1:
            probs = probs[None, :]
        if probs.dim() != 2 or probs.shape[1] != self.space.onehot_width:
            raise ValueError(f"{self.space.name}: expected probabilities of shape "
                             f"(n, {self.space.onehot_width}), got {tuple(probs.shape)}")
        x = probs.to(self.dtype)
        parts = list(torch.split(x, [d.n for d in self.space.decisions], dim=1))
        n = x.shape[0]
        state = torch.ones(n, 1, dtype=self.dtype, device=x.device)
        per_pos, k = [], 0
        for i in range(self.n_positions):
            joint = joint_probs(parts[k: k + len(self.cards[i])])
            k += len(self.cards[i])
            both = (state[:, :, None] * joint[:, None, :]).reshape(n, -1)  # (n, in x combo)
            terms, trans = getattr(self, f"terms{i}"), getattr(self, f"trans{i}")
            per_pos.append(both @ terms.reshape(-1, terms.shape[-1]))
            state = both @ trans.reshape(-1, trans.shape[-1])
        pos = torch.stack(per_pos, dim=1)  # (n, n_positions, 5): lat, madds, params, layers, act
        head = state @ self.head  # (n, 3): head ms, head madds, head params
        table_sum = self.stem_ms + pos[:, :, 0].sum(dim=1) + head[:, 0]
        cols = []
        if "encoding" in self.parts:
            cols.append(x)
        if "counts" in self.parts:
            madds = pos[:, :, 1].sum(dim=1) + self.stem_madds + head[:, 1]
            params = pos[:, :, 2].sum(dim=1) + self.stem_params + head[:, 2]
            cols += [torch.log(madds)[:, None], torch.log(params)[:, None],
                     pos[:, :, 3].sum(dim=1)[:, None], pos[:, :, 1] / 1e6, pos[:, :, 4] / 1e6]
        if "table" in self.parts:
            stem = torch.full((n, 1), self.stem_ms, dtype=self.dtype, device=x.device)
            cols += [torch.log(table_sum)[:, None], table_sum[:, None], stem, head[:, :1],
                     pos[:, :, 0]]
        feats = torch.cat(cols, dim=1)
        assert feats.shape[1] == self.n_features
        return feats, table_sum


def _linear_head(reg) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(mean, scale, coef, intercept) of a saved or fitted StandardScaler + Ridge, else None."""
    if all(hasattr(reg, a) for a in ("mean", "scale", "coef", "intercept")):
        return reg.mean, reg.scale, np.ravel(reg.coef), float(reg.intercept)
    steps = getattr(reg, "steps", None)
    if steps and len(steps) == 2 and hasattr(steps[0][1], "mean_") and hasattr(steps[1][1], "coef_"):
        sc, lin = steps[0][1], steps[1][1]
        return sc.mean_, sc.scale_, np.ravel(lin.coef_), float(np.ravel(lin.intercept_)[0])
    return None


class RelaxedLearnedLatency(nn.Module):
    """A ``LatencyModel`` / ``ResidualLatency`` with a ridge or torch-MLP regressor on
    :class:`RelaxedFeatures`: ``exp(f(features)) [* table sum]`` (ms)."""

    def __init__(self, predictor):
        super().__init__()
        self.features = RelaxedFeatures(predictor.features_)
        self.residual = bool(predictor.residual)
        reg = predictor.regressor_
        lin = _linear_head(reg)
        self.mlp = None
        if lin is not None:
            mean, scale, coef, intercept = lin
            self.register_buffer("w", torch.as_tensor(coef / scale, dtype=torch.float64))
            self.b = float(intercept - np.dot(mean / scale, coef))
        elif hasattr(reg, "network_") and hasattr(reg, "x_mean_"):
            # standardise in float64 as TorchMLPRegressor.predict does (its torch_forward works
            # in float32, which a near-constant feature with a tiny scale turns into noise)
            self.mlp = reg
            self.network = reg.network_
            self.register_buffer("x_mean", torch.as_tensor(reg.x_mean_, dtype=torch.float64))
            self.register_buffer("x_scale", torch.as_tensor(reg.x_scale_, dtype=torch.float64))
        else:
            raise ValueError(f"no differentiable form for a {type(reg).__name__} regressor")

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Latency (ms) the regressor gives the expected features of ``probs``."""
        feats, table_sum = self.features(probs)
        if self.mlp is None:
            out = feats @ self.w + self.b
        else:
            z = ((feats - self.x_mean) / self.x_scale).to(torch.float32)
            out = self.network(z)[:, 0].to(feats.dtype) * self.mlp.y_scale_ + self.mlp.y_mean_
        if self.residual:
            out = out + torch.log(table_sum)
        return torch.exp(out)


class _Affine(nn.Module):
    """``max(coef * inner + intercept, floor * inner)``: the affine predictors' form."""

    def __init__(self, inner: nn.Module, coef: float, intercept: float, floor: float = 0.0):
        super().__init__()
        self.inner, self.coef, self.intercept = inner, float(coef), float(intercept)
        self.floor = float(floor)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        x = self.inner(probs)
        return torch.maximum(self.coef * x + self.intercept, self.floor * x)


class _Madds(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = RelaxedFeatures(features)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        feats, _ = self.features(probs)
        return torch.exp(feats[:, 0])  # counts part only: log MAdds first


class DistilledMLP(nn.Module):
    """An MLP on the one-hot encoding; ``log_output`` returns ``exp`` of the net (ms)."""

    def __init__(self, width: int, hidden: tuple[int, ...] = DISTILL_HIDDEN, y_mean: float = 0.0,
                 y_scale: float = 1.0, log_output: bool = False):
        super().__init__()
        layers, prev = [], width
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.ReLU()]
            prev = int(h)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)
        self.width, self.hidden = width, tuple(int(h) for h in hidden)
        self.register_buffer("y_stats", torch.tensor([y_mean, y_scale], dtype=torch.float32))
        self.log_output = log_output

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """Accuracy the distilled MLP predicts for (relaxed) one-hot encodings ``probs``."""
        if probs.dim() == 1:
            probs = probs[None, :]
        out = self.net(probs.to(torch.float32))[:, 0] * self.y_stats[1] + self.y_stats[0]
        return torch.exp(out) if self.log_output else out


class _Adam:
    """Adam (Kingma & Ba) with decoupled weight decay on a few tensors; ``torch.optim``
    would import ``torch._dynamo`` (seconds of CPU on first use)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.v = [torch.zeros_like(p, requires_grad=False) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            if self.wd:
                p.mul_(1 - self.lr * self.wd)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2 ** self.t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1 ** self.t))

    def state_dict(self) -> dict:
        return {"m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v], "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for m, v, sm, sv in zip(self.m, self.v, state["m"], state["v"]):
            m.copy_(sm)
            v.copy_(sv)
        self.t = int(state["t"])


def distill(teacher: Callable[[np.ndarray], np.ndarray], space: SearchSpace, *,
            n: int = DISTILL_SAMPLES, heldout: int = DISTILL_HELDOUT, seed: int = 0,
            hidden: tuple[int, ...] = DISTILL_HIDDEN, epochs: int = DISTILL_EPOCHS,
            lr: float = 3e-3, log_target: bool = False) -> tuple[DistilledMLP, dict]:
    """Fit a :class:`DistilledMLP` to ``teacher(canonical idx)`` on ``n`` random members.

    Inputs are raw (uniform per decision) index vectors, so the MLP also sees
    non-canonical encodings with their canonical network's value. Returns the model
    and ``info`` with the Kendall tau / R^2 against the teacher on ``heldout`` fresh
    members and the wall time.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    raw = _raw_samples(space, rng, n + heldout)
    y = np.asarray(teacher(_canonical(space, raw)), dtype=np.float64)
    if log_target:
        y = np.log(y)
    x = torch.as_tensor(space.onehot(raw))
    tr, te = slice(0, n), slice(n, n + heldout)
    mu, sd = float(y[tr].mean()), float(y[tr].std()) or 1.0
    yt = torch.as_tensor((y - mu) / sd, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DistilledMLP(space.onehot_width, hidden, mu, sd, log_output=log_target)
        opt = _Adam(model.net.parameters(), lr, weight_decay=1e-5)
        bs = 256
        total, warm = epochs * math.ceil(n / bs), max(1, epochs * math.ceil(n / bs) // 10)
        gen = torch.Generator().manual_seed(seed)
        k = 0
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i: i + bs]
                # linear warm-up, then cosine decay to 1% of lr
                opt.lr = lr * ((k + 1) / warm if k < warm else
                               0.01 + 0.495 * (1 + math.cos(math.pi * (k - warm) / max(1, total - warm))))
                loss = nn.functional.mse_loss(model.net(x[b])[:, 0], yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                k += 1
    model.eval()
    with torch.no_grad():
        pred = model.net(x[te])[:, 0].numpy() * sd + mu
    truth = y[te]
    ss = float(np.sum((truth - truth.mean()) ** 2))
    info = {"samples": n, "heldout": heldout, "seed": seed, "hidden": list(model.hidden),
            "epochs": epochs, "log_target": log_target,
            "kendall_tau": _kendall(pred, truth),
            "r2": 1 - float(np.sum((truth - pred) ** 2)) / ss if ss > 0 else float("nan"),
            "seconds": round(time.perf_counter() - t0, 3)}
    return model, info


def relaxed_latency(predictor, *, seed: int = 0) -> tuple[nn.Module, dict]:
    """A torch module ``probs (n, onehot_width) -> ms (n,)`` for a fitted latency predictor.

    Exact on one-hots (equals ``predictor.predict``) for TableSum, FlopsLinear and
    learned / residual models with a ridge or MLP regressor; any other model (e.g.
    XGBoost) is distilled into an MLP on log latency. Returns ``(module, info)``.
    """
    from surrogate.predict.differentiable import ExpectedTableLatency, RelaxedMLP
    from surrogate.predict.estimators import FlopsLinear, LatencyModel, TableSum

    name = type(predictor).__name__
    if isinstance(predictor, TableSum):
        mod = _Affine(ExpectedTableLatency(predictor.features_.compiled_), predictor.coef_,
                      predictor.intercept_, predictor.floor_ratio_)
        return mod, {"kind": "expected-table-sum", "predictor": name}
    if isinstance(predictor, FlopsLinear):
        mod = _Affine(_Madds(predictor.features_), predictor.coef_, predictor.intercept_,
                      predictor.floor_ratio_)
        return mod, {"kind": "expected-madds-linear", "predictor": name}
    if isinstance(predictor, LatencyModel):
        if predictor.model == "mlp" and tuple(predictor.features_.parts) == ("encoding",) \
                and not predictor.residual:
            return RelaxedMLP(predictor), {"kind": "relaxed-mlp", "predictor": name}
        try:
            return RelaxedLearnedLatency(predictor), {
                "kind": "expected-features", "predictor": f"{name}({predictor.model})"}
        except ValueError:
            pass
        space = predictor.features_.space_
        mod, info = distill(lambda idx: predictor.predict(idx), space, seed=seed, log_target=True)
        return mod, {"kind": "distilled-mlp", "predictor": f"{name}({predictor.model})", **info}
    raise ValueError(f"no differentiable form for a {name} latency predictor")


# -- differentiable accuracy ----------------------------------------------------------------
def _teacher(accuracy) -> Callable[[np.ndarray], np.ndarray]:
    if getattr(accuracy, "name", "") == "proxy-train":
        raise ValueError("gradient search needs a cheap accuracy surrogate to distil "
                         "(anb or macro), not proxy-train")
    evaluate = getattr(accuracy, "_evaluate", None)  # the uncached batch hook: no key strings
    return evaluate if callable(evaluate) else (lambda idx: accuracy.batch(idx))


def distill_accuracy(accuracy, *, cache: str | os.PathLike | None = None, seed: int = 0,
                     n: int = DISTILL_SAMPLES, heldout: int = DISTILL_HELDOUT,
                     epochs: int = DISTILL_EPOCHS) -> tuple[DistilledMLP, dict]:
    """An MLP distilled from an accuracy objective (``(model, info)``).

    With ``cache`` (a ``.pt`` file), a model distilled earlier from the same teacher
    (objective name and fingerprint) for the same space is loaded instead; a new one
    is written there atomically.
    """
    space = accuracy.space
    key = {"format": CACHE_FORMAT, "objective": accuracy.name, "space": space.name,
           "width": space.onehot_width, "fingerprint": getattr(accuracy, "fingerprint", None)}
    path = Path(cache) if cache else None
    if path is not None and path.is_file():
        try:
            state = torch.load(path, weights_only=False)
        except Exception:  # noqa: BLE001 - unreadable cache: distil again
            state = None
        if isinstance(state, dict) and state.get("key") == key:
            info = state["info"]
            model = DistilledMLP(space.onehot_width, tuple(info["hidden"]))
            model.load_state_dict(state["model"])
            model.eval()
            return model, {**info, "cache": str(path), "from_cache": True}
    model, info = distill(_teacher(accuracy), space, n=n, heldout=heldout, seed=seed, epochs=epochs)
    info = {"teacher": f"{accuracy.name} ({key['fingerprint']})", **info}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"key": key, "info": info, "model": model.state_dict()}, tmp)
        os.replace(tmp, path)
        info = {**info, "cache": str(path), "from_cache": False}
    return model, info


# -- the relaxed objective ------------------------------------------------------------------
_LAYOUTS: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _layout(cards: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gather index (D, max card), padding mask, flat positions) of the grouped layout."""
    key = tuple(int(c) for c in cards)
    if key not in _LAYOUTS:
        mc = max(key)
        offs = np.concatenate([[0], np.cumsum(key)[:-1]])
        gather = np.zeros((len(key), mc), dtype=np.int64)
        mask = np.ones((len(key), mc), dtype=bool)
        flat = []
        for j, (o, c) in enumerate(zip(offs, key)):
            gather[j, :c] = o + np.arange(c)
            mask[j, :c] = False
            flat += [j * mc + k for k in range(c)]
        _LAYOUTS[key] = (torch.as_tensor(gather), torch.as_tensor(mask), torch.as_tensor(flat))
    return _LAYOUTS[key]


def grouped_softmax(logits: torch.Tensor, cards: list[int], hard: bool = False) -> torch.Tensor:
    """Per-decision softmax of ``(..., W)`` logits (groups of ``cards`` columns); ``hard``:
    straight-through one-hots (exact argmax one-hot forward, softmax gradient)."""
    gather, mask, flat = _layout(cards)
    z = logits[..., gather].masked_fill(mask, -math.inf)
    soft = torch.softmax(z, dim=-1)
    if hard:
        onehot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
        soft = onehot - soft.detach() + soft
    return soft.flatten(-2)[..., flat]


def gumbel_softmax(logits: torch.Tensor, cards: list[int], tau: float, n: int,
                   generator: torch.Generator | None = None, hard: bool = True) -> torch.Tensor:
    """``n`` relaxed one-hot samples per row of ``logits`` ``(m, W)`` -> ``(m, n, W)``.

    Per decision (groups of ``cards`` columns) a Gumbel-softmax at temperature
    ``tau``; ``hard``: straight-through (exact one-hot forward, soft gradient).
    """
    m, w = logits.shape
    u = torch.rand((m, n, w), generator=generator, dtype=logits.dtype).clamp_(1e-10, 1 - 1e-10)
    g = -torch.log(-torch.log(u))
    return grouped_softmax((logits[:, None, :] + g) / tau, cards, hard)


def relaxed_reward(acc: torch.Tensor, lat: torch.Tensor, target_ms: torch.Tensor | float,
                   alpha: torch.Tensor | float, beta: torch.Tensor | float) -> torch.Tensor:
    """``ACC * (LAT / T) ** w`` with ``w = alpha`` if ``LAT <= T`` else ``beta`` (autograd-safe)."""
    ratio = lat.clamp(min=1e-6) / target_ms
    w = torch.where(ratio <= 1, torch.as_tensor(alpha, dtype=lat.dtype),
                    torch.as_tensor(beta, dtype=lat.dtype))
    return acc.clamp(min=1e-4) * torch.exp(w * torch.log(ratio))


class RelaxedObjective(nn.Module):
    """Relaxed MnasNet reward of relaxed architectures, one reward setting per chain."""

    def __init__(self, accuracy: nn.Module, latency: nn.Module, target_ms: np.ndarray,
                 alpha: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.accuracy, self.latency = accuracy, latency
        self.register_buffer("target", torch.as_tensor(target_ms, dtype=torch.float64))
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float64))
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``(m, n, W)`` -> reward, accuracy, latency, each ``(m, n)``."""
        m, n, w = x.shape
        flat = x.reshape(m * n, w)
        acc = self.accuracy(flat).to(torch.float64).reshape(m, n)
        lat = self.latency(flat).to(torch.float64).reshape(m, n)
        r = relaxed_reward(acc, lat, self.target[:, None], self.alpha[:, None], self.beta[:, None])
        return r, acc, lat


# -- the controller ---------------------------------------------------------------------------
class GradientController(Controller):
    """Relaxed gradient search (FBNet / ProxylessNAS style) on differentiable surrogates.

    ``chains`` independent per-decision logit sets, each maximising the relaxed
    reward under its own setting: for the soft reward, exponents ``w * 2**u`` with
    ``u`` evenly spaced in [-2, 2] (one chain: ``w`` itself); for the hard reward,
    targets ``T * 2**u`` with ``u`` in [-1, 1]. Every ``steps`` Adam steps (``lr``,
    ``samples`` Gumbel-softmax draws per chain, temperature annealed from
    ``temperature`` to ``temperature_end`` (default ``min(0.5, temperature)``) over
    ``horizon`` proposals) each chain's
    argmax architecture is proposed.

    ``accuracy`` / ``latency``: the sweep's objectives (an accuracy objective to
    distil, a :class:`~search.latency.PredictedLatency`), or ready torch modules
    ``probs -> accuracy`` / ``probs -> ms`` via ``accuracy_model`` / ``latency_model``.
    ``target_ms`` None: the sweep's default (median predicted latency of 1,000
    random members). ``model_cache``: file for the distilled accuracy MLP.
    """

    name = "gradient"

    def __init__(self, space: SearchSpace, seed: int = 0, *, accuracy=None, latency=None,
                 accuracy_model: nn.Module | None = None, latency_model: nn.Module | None = None,
                 steps: int = 5, lr: float = 0.1, temperature: float = 5.0,
                 temperature_end: float | None = None, chains: int = 8, samples: int = 16,
                 horizon: int = 300, target_ms: float | None = None, reward: str = "soft",
                 exponent: float = -0.07, hard: bool = True,
                 model_cache: str | os.PathLike | None = None):
        super().__init__(space, seed)
        temperature_end = check_hyperparameters(
            steps=steps, lr=lr, temperature=temperature, temperature_end=temperature_end,
            chains=chains, samples=samples, horizon=horizon, reward=reward, target_ms=target_ms)
        if accuracy is None and accuracy_model is None:
            raise ValueError("gradient controller needs an accuracy objective or accuracy_model")
        if latency is None and latency_model is None:
            raise ValueError("gradient controller needs a latency objective or latency_model")
        if accuracy is not None and accuracy.space.name != space.name:
            raise ValueError(f"accuracy objective is for space {accuracy.space.name!r}, "
                             f"not {space.name!r}")
        torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a shared machine
        self.steps, self.lr, self.samples = int(steps), float(lr), int(samples)
        self.tau0, self.tau1 = float(temperature), float(temperature_end)
        self.n_chains, self.horizon = int(chains), int(horizon)
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
        self.opt = _Adam([self.logits], self.lr)
        self.step = 0
        self.queue: list[tuple[int, ...]] = []
        self.seen: set[tuple[int, ...]] = set()
        self.info: dict = {}
        self.objective: RelaxedObjective | None = None
        self.history: list[dict] = []  # per round: mean relaxed reward / acc / latency per chain

    # -- set-up ----------------------------------------------------------------------------
    def chain_settings(self, target_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per chain (target, alpha, beta)."""
        m = self.n_chains
        u = np.linspace(-1.0, 1.0, m) if m > 1 else np.zeros(1)
        if self.reward_kind == "soft":
            w = self.exponent * 4.0 ** u
            return np.full(m, target_ms), w, w
        return target_ms * 2.0 ** u, np.zeros(m), np.full(m, -1.0)

    def _ensure(self) -> RelaxedObjective:
        if self.objective is not None:
            return self.objective
        acc_model = self._acc_model
        if acc_model is None:
            acc_model, self.info["accuracy_model"] = distill_accuracy(self._accuracy,
                                                                      cache=self.model_cache)
        lat_model = self._lat_model
        if lat_model is None:
            pred = getattr(self._latency, "predictor", None)
            if pred is None:
                raise ValueError("gradient search needs a predicted latency (a fitted predictor)")
            lat_model, self.info["latency_model"] = relaxed_latency(pred)
        target = self.target_ms
        if target is None:
            from .sweep import default_target

            if self._latency is not None:
                target = default_target(self._latency, self.space)
            else:
                idx = self.space.sample_indices(np.random.default_rng(0), 1000)
                with torch.no_grad():
                    target = float(np.median(lat_model(torch.as_tensor(self.space.onehot(idx))).numpy()))
            self.target_ms = float(target)
        self.info["target_ms"] = float(target)
        tgt, alpha, beta = self.chain_settings(float(target))
        self.info["chains"] = [{"target_ms": float(t), "alpha": float(a), "beta": float(b)}
                               for t, a, b in zip(tgt, alpha, beta)]
        for p in list(acc_model.parameters()) + list(lat_model.parameters()):
            p.requires_grad_(False)
        self.objective = RelaxedObjective(acc_model, lat_model, tgt, alpha, beta)
        return self.objective

    # -- the search --------------------------------------------------------------------------
    def temperature(self) -> float:
        """The Gumbel-softmax temperature at the current step (geometric annealing)."""
        total = self.steps * max(1, math.ceil(self.horizon / self.n_chains))
        frac = min(1.0, self.step / total)
        return self.tau0 * (self.tau1 / self.tau0) ** frac

    def loss(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Negative mean relaxed reward over Gumbel samples, summed over chains."""
        obj = self._ensure()
        if x is None:
            x = gumbel_softmax(self.logits, self.cards, self.temperature(), self.samples,
                               self.gen, self.hard)
        r, _, _ = obj(x)
        return -r.mean(dim=1).sum()

    def train_round(self) -> None:
        """``steps`` Adam steps on the relaxed objective."""
        obj = self._ensure()
        for _ in range(self.steps):
            x = gumbel_softmax(self.logits, self.cards, self.temperature(), self.samples,
                               self.gen, self.hard)
            r, acc, lat = obj(x)
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
        with torch.no_grad():
            return grouped_softmax(self.logits, self.cards).numpy()

    def argmax(self) -> np.ndarray:
        """The most likely index vector of each chain, ``(chains, n_decisions)``."""
        with torch.no_grad():
            return self.space.from_onehot(self.logits.numpy())

    def _fresh(self, chain: int, idx: np.ndarray) -> tuple[int, ...]:
        """``idx`` canonicalised, or an unseen draw from the chain (then a mutation)."""
        cand = self.space.canonical(idx)
        if cand not in self.seen:
            return cand
        with torch.no_grad():
            gather, mask, _ = _layout(self.cards)
            probs = grouped_softmax(self.logits[chain], self.cards)[gather].masked_fill(mask, 0.0)
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

    def observe(self, idx, accuracy, latency_ms, reward) -> None:
        """The search runs on the surrogates; evaluations only mark networks as seen."""
        for i in idx:
            self.seen.add(tuple(int(v) for v in i))

    # -- checkpoint ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint logits, optimiser, proposals, RNG states and the distilled model."""
        obj = self.objective
        state = {"controller": self.name, "cards": self.cards, "chains": self.n_chains,
                 "logits": self.logits.detach().clone(), "opt": self.opt.state_dict(),
                 "step": self.step, "queue": list(self.queue), "seen": sorted(self.seen),
                 "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state,
                 "target_ms": self.target_ms, "info": self.info, "history": self.history,
                 "accuracy_model": None if obj is None or self._acc_given
                 else obj.accuracy.state_dict(),
                 "accuracy_hidden": None if obj is None else getattr(obj.accuracy, "hidden", None)}
        save_checkpoint(state, path)

    def load(self, path: str | os.PathLike) -> bool:
        """Restore from :meth:`save`'s file; False if there is none."""
        state = load_checkpoint(path, self.name, self.cards)
        if state is None:
            return False
        if state["chains"] != self.n_chains:
            raise ValueError(f"checkpoint {path} has {state['chains']} chains, not {self.n_chains}")
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
        self.opt.load_state_dict(state["opt"])
        self.step = state["step"]
        self.queue = [tuple(q) for q in state["queue"]]
        self.seen = {tuple(s) for s in state["seen"]}
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state["history"])
        return True
