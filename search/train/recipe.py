"""The MnasNet ImageNet training recipe (paper Sec. 4-5 and the authors' TF release).

Every setting is a field of :class:`TrainConfig` with the paper's value as default.
The schedule, optimizer and EMA follow the TF release (``tensorflow/tpu``,
``models/official/mnasnet``) step for step:

* learning rate ``lr_per_256 * global_batch / 256``; linear warm-up from 0 over
  ``int(warmup_epochs * steps_per_epoch)`` steps; otherwise
  ``peak * decay_rate ** floor(step / (decay_epochs * steps_per_epoch))`` -- the
  staircase clock starts at step 0, not at the end of warm-up, exactly as
  ``tf.train.exponential_decay`` inside ``build_learning_rate`` does, so the first
  post-warm-up rate is ``peak * 0.97**2`` with the defaults;
* RMSProp as TF1's ``tf.train.RMSPropOptimizer`` (see :class:`RMSpropTF`);
* weight decay as an L2 term on the loss (coupled, ``grad += wd * w``), on conv
  and linear weights only: BatchNorm parameters and biases are excluded;
* an exponential moving average of the weights *and* BN statistics, with TF's
  ``num_updates`` warm-up ``decay = min(decay, (1 + n) / (10 + n))``.

TF's RMSProp puts epsilon inside the square root, ``lr * g / sqrt(ms + eps)``,
initialises the mean square ``ms`` to ones and keeps the learning rate inside the
momentum buffer. :class:`RMSpropTF` (the default, ``optimizer="rmsprop_tf"``) does
exactly that. ``optimizer="rmsprop_torch"`` uses ``torch.optim.RMSprop`` with
``alpha=rms_decay``, ``momentum`` and ``eps=sqrt(rms_eps)``: the same floor on the
denominator when ``ms -> 0`` (``sqrt(0 + 1e-3) == 0 + sqrt(1e-3)``) and the same
value when ``ms >> eps``, at most ``sqrt(2)`` apart in between (at ``ms == eps``);
torch starts ``ms`` at zeros and applies the current rate to the whole momentum
buffer, so early steps differ.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

OPTIMIZERS = ("rmsprop_tf", "rmsprop_torch")
AMP_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run; defaults are the paper's ImageNet recipe.

    ``batch_size`` is per process (per GPU); the learning rate scales with the
    global batch ``batch_size * world_size``. ``dropout=None`` keeps the
    architecture's own rate (0.2 for the paper's networks, 0 for mnasnet-small).
    ``amp`` / ``channels_last`` ``None`` mean "on when training on CUDA".
    ``bn_momentum`` is in TF's convention (``running = m * running + (1-m) * batch``);
    PyTorch's ``momentum`` is ``1 - bn_momentum``. ``eval_crop`` is the side of the
    centred evaluation crop as a fraction of the shorter image side (the TF release
    crops ``res / (res + 32)``: 0.875 at 224, and too tight for small images).
    """

    epochs: int = 350
    batch_size: int = 128
    lr_per_256: float = 0.016
    warmup_epochs: float = 5.0
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    optimizer: str = "rmsprop_tf"
    rms_decay: float = 0.9
    momentum: float = 0.9
    rms_eps: float = 1e-3
    weight_decay: float = 1e-5
    decay_biases: bool = False
    label_smoothing: float = 0.1
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    dropout: float | None = None
    bn_momentum: float = 0.99
    bn_eps: float = 1e-3
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    eval_crop: float = 0.875
    seed: int = 0
    amp: bool | None = None
    amp_dtype: str = "float16"
    channels_last: bool | None = None
    num_workers: int = 4
    ckpt_every_steps: int = 1000
    eval_every: int = 1

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = False, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok_type = (isinstance(v, int) if integer else isinstance(v, (int, float)))
            if isinstance(v, bool) or not ok_type or (v < 0 if allow_zero else v <= 0) \
                    or (not integer and not math.isfinite(v)):
                kind = "integer" if integer else "number"
                bound = ">= 0" if allow_zero else "> 0"
                raise ValueError(f"TrainConfig.{name} must be a {kind} {bound}, got {v!r}")

        for name in ("epochs", "num_workers", "ckpt_every_steps"):
            positive(name, integer=True, allow_zero=True)
        for name in ("batch_size", "eval_every"):
            positive(name, integer=True)
        for name in ("lr_per_256", "decay_epochs", "rms_eps", "bn_eps"):
            positive(name)
        for name in ("warmup_epochs", "weight_decay"):
            positive(name, allow_zero=True)
        for name in ("decay_rate", "rms_decay", "ema_decay", "bn_momentum", "eval_crop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
                raise ValueError(f"TrainConfig.{name} must be in (0, 1], got {v!r}")
        for name in ("momentum", "label_smoothing"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {v!r}")
        if self.dropout is not None and (isinstance(self.dropout, bool)
                                         or not isinstance(self.dropout, (int, float))
                                         or not 0.0 <= self.dropout < 1.0):
            raise ValueError(f"TrainConfig.dropout must be None or in [0, 1), got {self.dropout!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"TrainConfig.amp_dtype must be one of {', '.join(AMP_DTYPES)}, "
                             f"got {self.amp_dtype!r}")
        for name, lo_hi in (("crop_scale", (0.0, 1.0)), ("crop_ratio", (0.0, math.inf))):
            v = tuple(getattr(self, name))
            if len(v) != 2 or not (lo_hi[0] < v[0] <= v[1] <= lo_hi[1]):
                raise ValueError(f"TrainConfig.{name} must be (lo, hi) with "
                                 f"{lo_hi[0]} < lo <= hi <= {lo_hi[1]}, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (float(v[0]), float(v[1])))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field."""
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        d["crop_ratio"] = list(self.crop_ratio)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        d = dict(d)
        for k in ("crop_scale", "crop_ratio"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


# -- learning rate -----------------------------------------------------------------
def peak_lr(cfg: TrainConfig, global_batch: int) -> float:
    """``lr_per_256 * global_batch / 256`` (0.256 at batch 4096 with the defaults)."""
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ValueError(f"global_batch must be a positive integer, got {global_batch!r}")
    return cfg.lr_per_256 * global_batch / 256.0


def lr_at(step: int, cfg: TrainConfig, steps_per_epoch: int, global_batch: int) -> float:
    """Learning rate used by update number ``step`` (0-based), as in the TF release."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    peak = peak_lr(cfg, global_batch)
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return peak * step / warmup_steps
    decay_steps = steps_per_epoch * cfg.decay_epochs
    return peak * cfg.decay_rate ** math.floor(step / decay_steps)


# -- optimizer -----------------------------------------------------------------------
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Two optimizer groups: ``decay`` (conv/linear weights) and ``no_decay``.

    Normalisation-layer parameters are never decayed; biases only when
    ``cfg.decay_biases`` (the TF release decays every non-BN variable, biases
    included; the paper says "non-BN weights").
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if isinstance(module, _NORM_TYPES) or (name == "bias" and not cfg.decay_biases):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp exactly as TF1's ``tf.train.RMSPropOptimizer`` (the MnasNet release).

    Per parameter: ``g += weight_decay * w``; ``ms = alpha * ms + (1 - alpha) * g**2``
    (``ms`` starts at 1); ``mom = momentum * mom + lr * g / sqrt(ms + eps)``;
    ``w -= mom``.
    """

    def __init__(self, params: Iterable, lr: float, alpha: float = 0.9, eps: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or eps <= 0 or not 0 <= alpha <= 1 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"invalid RMSpropTF settings: lr={lr}, alpha={alpha}, eps={eps}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch API
        """One RMSProp step, TensorFlow semantics (eps inside the sqrt, ms starts at 1)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, sqs, bufs = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                sqs.append(state["square_avg"])
                bufs.append(state["momentum_buffer"])
            if not params:
                continue
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_mul_(sqs, group["alpha"])
            torch._foreach_addcmul_(sqs, grads, grads, value=1.0 - group["alpha"])
            denom = torch._foreach_add(sqs, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_addcdiv_(bufs, grads, denom, value=group["lr"])
            torch._foreach_sub_(params, bufs)
        return loss


def make_optimizer(model: nn.Module, cfg: TrainConfig, global_batch: int) -> torch.optim.Optimizer:
    """RMSProp over :func:`param_groups`, at the peak learning rate for ``global_batch``.

    The rate actually used at each step is set by :func:`make_scheduler`.
    """
    groups = param_groups(model, cfg)
    lr = peak_lr(cfg, global_batch)
    if cfg.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, alpha=cfg.rms_decay, eps=cfg.rms_eps,
                         momentum=cfg.momentum)
    return torch.optim.RMSprop(groups, lr=lr, alpha=cfg.rms_decay, eps=math.sqrt(cfg.rms_eps),
                               momentum=cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                   global_batch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` giving :func:`lr_at`; call ``scheduler.step()`` after every update.

    Sets every group's base rate to the peak rate for ``global_batch`` (the
    schedule defines the rate completely).
    """
    peak = peak_lr(cfg, global_batch)
    lr_at(0, cfg, steps_per_epoch, global_batch)  # validates the arguments
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = peak

    def factor(step: int) -> float:
        return lr_at(step, cfg, steps_per_epoch, global_batch) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_bn(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """Set every BatchNorm to the recipe's momentum (TF convention) and epsilon."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0 - cfg.bn_momentum
            m.eps = cfg.bn_eps
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper."""
    return getattr(model, "module", model)


# -- EMA -----------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers.

    After each update ``shadow = d * shadow + (1 - d) * value`` with
    ``d = min(decay, (1 + n) / (10 + n))`` at the ``n``-th update when ``warmup``
    (TF's ``ExponentialMovingAverage(decay, num_updates=global_step)``), else
    ``d = decay``. Integer buffers (BN's ``num_batches_tracked``) are copied.
    ``module`` is an eval-mode copy holding the averages.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, *, warmup: bool = True):
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"EMA decay must be in (0, 1], got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay applied at update number ``updates`` (1-based)."""
        if self.warmup:
            return min(self.decay, (1.0 + updates) / (10.0 + updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        self.updates += 1
        d = self.decay_at(self.updates)
        src = unwrap(model).state_dict()
        shadow, values = [], []
        for k, v in self.module.state_dict().items():
            s = src[k].detach()
            if v.dtype.is_floating_point:
                shadow.append(v)
                values.append(s.to(v.dtype))
            else:
                v.copy_(s)
        if shadow:
            torch._foreach_lerp_(shadow, values, 1.0 - d)

    def state_dict(self) -> dict:
        """Decay settings, update count and the averaged weights."""
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates,
                "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
