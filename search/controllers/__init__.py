"""Search controllers that propose architectures for a sweep: random search, regularised
evolution (:mod:`.evolution`), the MnasNet PPO controller (:mod:`.ppo`) and the relaxed
gradient search (:mod:`.gradient`, its Gumbel-softmax math in :mod:`.relaxation`).

A controller proposes canonical index vectors (``propose(n)``) and learns from their
results. The sweep sends every proposal through Optuna's ask/tell (an enqueued trial),
so controller trials share storage, plots and Pareto front with Optuna's own samplers;
attached to a sweep (:meth:`Controller.before_sweep`), a controller learns from every
worker's trials in the study and keeps the rest of its state in files named by the
study (:mod:`.base`). Importing this package does not import torch.
"""
from __future__ import annotations

from space.spaces import SearchSpace

from .base import (Controller, Observations, SweepContext, load_checkpoint, read_checkpoint,
                   save_checkpoint)
from .evolution import EvolutionController
from .gradient import GradientController, check_hyperparameters, check_positive
from .ppo import PPOController
from .random import RandomController

CONTROLLERS: dict[str, type[Controller]] = {
    c.name: c for c in (PPOController, EvolutionController, RandomController, GradientController)}

__all__ = ["CONTROLLERS", "Controller", "EvolutionController", "GradientController",
           "Observations", "PPOController", "RandomController", "SweepContext",
           "check_hyperparameters", "check_positive", "check_settings", "controller_names",
           "controller_options", "get_controller", "load_checkpoint", "make_controller",
           "read_checkpoint", "save_checkpoint"]


def controller_names() -> tuple[str, ...]:
    """The registered controller names."""
    return tuple(CONTROLLERS)


def get_controller(name: str) -> type[Controller]:
    """The controller class registered as ``name``."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}; expected one of {', '.join(CONTROLLERS)}")
    return CONTROLLERS[name]


def controller_options() -> tuple[str, ...]:
    """Every controller-specific setting (keyword names), in registry order."""
    return tuple(dict.fromkeys(o for c in CONTROLLERS.values() for o in c.options))


def check_settings(name: str, options: dict, **sweep) -> None:
    """Validate ``options`` for controller ``name`` before any objective is built: each must
    be one of its own (else ``--OPTION applies to --controller OWNER only``), then its
    :meth:`Controller.check_settings` with the sweep's settings ``sweep``."""
    cls = get_controller(name)
    for k in options:
        if k not in cls.options:
            owners = " / ".join(n for n, c in CONTROLLERS.items() if k in c.options) or "none"
            raise ValueError(f"--{k.replace('_', '-')} applies to --controller {owners} only")
    cls.check_settings(options, **sweep)


def make_controller(name: str, space: SearchSpace, seed: int = 0, **kw) -> Controller:
    """A controller by name: ``ppo``, ``evolution``, ``random`` or ``gradient``."""
    return get_controller(name)(space, seed=seed, **kw)
