"""The controller interface, the sweep as controllers see it, and safe checkpoints.

A controller proposes canonical index vectors (``propose(n)``) and learns from their
results. Standing alone it learns from what it is told (``observe``). Driving a sweep
(:meth:`Controller.before_sweep`), it is attached to a :class:`SweepContext` and learns
from the study instead, which holds every worker's trials: whatever a controller keeps
beyond the study lives in files named by the study (:meth:`SweepContext.save_state`),
written under per-process temporary names and renamed into place, so several workers
on one study share it ("newest wins", no locks).

Checkpoints hold tensors and plain values only and are read with
``torch.load(weights_only=True)``: a file carrying anything else (a pickled callable can
run code) is refused with a one-line error naming it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, NamedTuple

import numpy as np

from space.spaces import SearchSpace

from ..reward import MnasReward


# -- checkpoints ----------------------------------------------------------------------------
def plain(obj: Any) -> Any:
    """``obj`` with numpy values as Python ones and paths as strings (tensors kept), so
    that ``torch.load(weights_only=True)`` can read it back."""
    if isinstance(obj, dict):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a controller checkpoint (tensors and plain values) atomically: a per-process
    temporary file, then a rename."""
    import torch

    from surrogate.tables import atomic_path

    with atomic_path(path) as tmp:
        torch.save(plain(state), tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at ``path``, read with ``weights_only=True``; ``ValueError`` (one line,
    naming the file) when it holds anything but tensors and plain values, or is unreadable."""
    import pickle

    import torch

    try:
        state = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        raise ValueError(f"checkpoint {path} is refused: it holds more than tensors and plain "
                         f"values (loading it could run code); delete it and retrain") from None
    except Exception as exc:  # truncated, not a torch file, ...
        why = ": ".join([type(exc).__name__] + str(exc).strip().splitlines()[:1])
        raise ValueError(f"checkpoint {path} is unreadable ({why}); delete it and retrain") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is not a controller checkpoint; delete it and retrain")
    return state


def load_checkpoint(path: str | os.PathLike, controller: str, cards) -> dict | None:
    """The checkpoint at ``path`` (None if absent), checked to be ``controller``'s for this space."""
    path = Path(path)
    if not path.is_file():
        return None
    state = read_checkpoint(path)
    owner = state.get("controller", "ppo")
    if owner != controller:
        raise ValueError(f"checkpoint {path} belongs to the {owner!r} controller, not {controller!r}")
    if state.get("cards") != list(cards):
        raise ValueError(f"checkpoint {path} belongs to another space (decisions differ)")
    return state


# -- the sweep as controllers see it -----------------------------------------------------------
class Observations(NamedTuple):
    """Evaluated trials: numbers, canonical index tuples and aligned value arrays."""
    numbers: list[int]
    idx: list[tuple[int, ...]]
    accuracy: np.ndarray
    latency_ms: np.ndarray
    reward: np.ndarray


@dataclass
class SweepContext:
    """What a controller sees of the sweep it drives.

    ``study`` is shared by every worker; ``reward`` is the sweep's reward (its
    ``target_ms`` the latency target); ``directory`` (the sweep's output folder) holds
    the controllers' state files, named by :attr:`key`.
    """

    study: Any
    space: SearchSpace
    reward: MnasReward
    directory: Path
    trials: int
    reward_kind: str = "soft"
    accuracy: Any = None
    latency: Any = None
    _origin: str | None = field(default=None, init=False, repr=False)

    def _trials(self, states=None) -> list:
        return sorted(self.study.get_trials(deepcopy=False, states=states), key=lambda t: t.number)

    def complete(self, skip: Collection[int] = (), last: int | None = None) -> Observations:
        """The study's COMPLETE trials (by number; the ``last`` ones) not in ``skip``, with
        the sweep's reward."""
        from optuna.trial import TrialState

        from ..ledger import trial_indices

        names = [d.name for d in self.space.decisions]
        done = [t for t in self._trials((TrialState.COMPLETE,))
                if t.number not in skip and trial_indices(t, names) is not None]
        done = done[-last:] if last else done
        idx = [self.space.canonical(trial_indices(t, names)) for t in done]
        acc = np.array([t.values[0] for t in done], dtype=float)
        lat = np.array([t.values[1] for t in done], dtype=float)
        rew = np.asarray(self.reward(acc, lat), dtype=float) if done else np.zeros(0)
        return Observations([t.number for t in done], idx, acc, lat, rew)

    def proposed(self) -> set[tuple[int, ...]]:
        """Canonical networks of every trial that has its parameters (asked or finished)."""
        from ..ledger import trial_indices

        names = [d.name for d in self.space.decisions]
        return {self.space.canonical(i) for t in self._trials()
                if (i := trial_indices(t, names)) is not None}

    @property
    def key(self) -> str:
        """The study's name and the start of its trial 0: tells a study from an earlier
        one of the same name whose files are still in the folder."""
        if self._origin is None:
            first = next(iter(self._trials()), None)
            if first is None or first.datetime_start is None:
                return f"{_slug(self.study.study_name)}-new"
            self._origin = first.datetime_start.strftime("%Y%m%dT%H%M%S%f")
        return f"{_slug(self.study.study_name)}-{self._origin}"

    def resume_checkpoint(self, controller: str, cards) -> dict | None:
        """``controller``'s own checkpoint in the output folder (:attr:`checkpoint`) if it is
        this study's: tagged with :attr:`key`, or untagged (written before checkpoints were
        tagged) while the study has finished trials. A new study never reads the file."""
        if not self.complete().numbers:
            return None
        state = load_checkpoint(self.checkpoint, controller, cards)
        return state if state is not None and state.get("study", self.key) == self.key else None

    @property
    def checkpoint(self) -> Path:
        """A controller's own resume file in the output folder (one worker's private state)."""
        return self.directory / "controller.pt"

    # -- state files shared by the workers of the study -------------------------------------
    def state_path(self, controller: str, count: int) -> Path:
        """The state file of ``controller`` that has learned from ``count`` trials."""
        return self.directory / f"{self.key}.{controller}.{count:06d}.pt"

    def _state_files(self, controller: str) -> list[tuple[int, Path]]:
        pat = re.compile(re.escape(f"{self.key}.{controller}.") + r"(\d+)\.pt")
        found = [(int(m.group(1)), p) for p in self.directory.glob(f"*.{controller}.*.pt")
                 if (m := pat.fullmatch(p.name))]
        return sorted(found, reverse=True)

    def newest_state(self, controller: str, cards, above: int = -1) -> dict | None:
        """The state file of ``controller`` with the highest count above ``above`` (None if none)."""
        for count, path in self._state_files(controller):
            if count <= above:
                return None
            try:
                state = load_checkpoint(path, controller, cards)
            except FileNotFoundError:  # pruned by another worker meanwhile: try the next one
                continue
            if state is not None:
                return state
        return None

    def save_state(self, controller: str, count: int, state: dict, keep: int = 2) -> Path:
        """Write ``state`` as ``controller``'s state after ``count`` trials; prune older files."""
        path = self.state_path(controller, count)
        save_checkpoint({**state, "controller": controller, "study": self.key}, path)
        for _, old in self._state_files(controller)[keep:]:
            try:
                old.unlink()
            except FileNotFoundError:
                pass
        return path


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:80] or "study"


# -- the interface ---------------------------------------------------------------------------
class Controller:
    """Interface; ``name`` identifies it in study attributes and state files, ``options``
    are the settings that only this controller takes (by their keyword names)."""

    name = "controller"
    options: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.ctx: SweepContext | None = None

    @classmethod
    def check_settings(cls, options: dict, *, reward: str = "soft", target_ms: float | None = None,
                       latency: str = "predicted") -> None:
        """Validate settings before any objective is built (``ValueError`` naming the bad one)."""

    def propose(self, n: int) -> list[tuple[int, ...]]:
        """The next ``n`` architectures to evaluate, as decision-index tuples."""
        raise NotImplementedError

    def observe(self, idx, accuracy, latency_ms, reward) -> None:
        """Learn from evaluated proposals (arrays aligned with ``idx``); in a sweep, catch
        up with the study instead, which holds these and every other worker's trials."""
        if self.ctx is not None:
            self.sync()
        else:
            self.learn(idx, accuracy, latency_ms, reward)

    def learn(self, idx, accuracy, latency_ms, reward) -> None:
        """Update the controller's state from evaluated networks."""

    def before_sweep(self, ctx: SweepContext) -> None:
        """Attach to the sweep (called once, before the first proposal) and catch up."""
        self.ctx = ctx
        self.sync()

    def sync(self) -> None:
        """Catch up with the study's trials and share what was learned (attached only)."""

    def after_sweep(self, result) -> None:
        """Add what the controller reports to the sweep's result."""

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint_state(self) -> dict | None:
        """The state beyond the study, as tensors and plain values (None: there is none)."""
        return None

    def restore(self, state: dict, source: str | os.PathLike) -> None:
        """Take over :meth:`checkpoint_state`'s ``state`` (read from ``source``)."""

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint :meth:`checkpoint_state` (no-op when the state is all in the study)."""
        state = self.checkpoint_state()
        if state is not None:
            save_checkpoint(state, path)

    def load(self, path: str | os.PathLike) -> bool:
        """Restore from :meth:`save`'s file; False if there is none (or nothing to restore)."""
        if self.checkpoint_state() is None:
            return False
        state = load_checkpoint(path, self.name, [d.n for d in self.space.decisions])
        if state is None:
            return False
        self.restore(state, path)
        return True
