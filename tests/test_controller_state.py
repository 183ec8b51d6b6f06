"""Controller state shared through the study (several workers on one study) and
checkpoints that hold tensors and plain values only (``weights_only=True``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from space import get_space  # noqa: E402
from search.controllers import (EvolutionController, GradientController, PPOController,  # noqa: E402
                                SweepContext)
from search.reward import MnasReward  # noqa: E402
from search.sweep import SweepConfig, open_storage, run_sweep  # noqa: E402
from search.ledger import trial_indices  # noqa: E402

SPACE = get_space("nasbench-macro")


class _Accuracy:
    """A cheap accuracy objective on nasbench-macro: more 1-choices are better."""
    name, fingerprint, space = "toy", "toy-1", SPACE

    def batch(self, idx):
        return 0.5 + 0.4 * (np.asarray(idx) == 1).mean(axis=1)


class _Latency:
    """A cheap latency objective: larger choices are slower."""

    def batch(self, idx):
        return 1.0 + np.asarray(idx, dtype=float).sum(axis=1)


class _Linear(torch.nn.Module):
    """``base + x @ w`` on the relaxed encoding (a differentiable surrogate)."""

    def __init__(self, base: float, scale: float):
        super().__init__()
        self.base = base
        self.register_buffer("w", scale * (torch.arange(SPACE.onehot_width, dtype=torch.float64) % 3))

    def forward(self, x):
        return self.base + x.to(torch.float64) @ self.w


def _sweep(ctrl, tmp_path, trials: int, storage: str, study: str = "s"):
    cfg = SweepConfig(space=SPACE.name, accuracy="toy", controller=ctrl.name, trials=trials, batch=8,
                      storage=storage, study_name=study, seed_reference=False, out_dir=str(tmp_path / "out"),
                      latency_target_ms=5.0)
    return run_sweep(cfg, _Accuracy(), _Latency(), progress=False, controller=ctrl)


def _complete(storage: str, study: str = "s") -> list:
    s = optuna.load_study(study_name=study, storage=open_storage(storage))
    return sorted(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)


def _storage(kind: str, tmp_path) -> str:
    return f"journal:{tmp_path / 'j.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"


# -- two workers on one study -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_evolution_workers_see_each_others_trials(kind, tmp_path):
    storage = _storage(kind, tmp_path)
    a = EvolutionController(SPACE, seed=0, population=10, sample=3)
    _sweep(a, tmp_path, 24, storage)  # worker A alone

    def newest(done):
        return {SPACE.canonical(trial_indices(t, [d.name for d in SPACE.decisions])) for t in done[-10:]}

    b = EvolutionController(SPACE, seed=1, population=10, sample=3)  # worker B joins
    b.before_sweep(SweepContext(a.ctx.study, SPACE, MnasReward.soft(5.0), tmp_path / "out", 48))
    b.propose(1)
    assert {m[0] for m in b.population} == newest(_complete(storage))  # A's trials
    _sweep(b, tmp_path, 48, storage)
    done = _complete(storage)
    assert len(done) == 48 and all(t.number >= 24 for t in done[-10:])  # B's trials
    # A, still attached, re-reads the study at its next generation: B's trials are its population
    a.propose(1)
    assert {m[0] for m in a.population} == newest(done) and len(a.population) == 10


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_ppo_workers_share_one_policy_through_the_study(kind, tmp_path):
    storage = _storage(kind, tmp_path)
    a = PPOController(SPACE, seed=0, batch=8)
    _sweep(a, tmp_path, 24, storage)
    first = {t.number for t in _complete(storage)}
    assert a.consumed == first and a.updates == 3
    files = sorted(p.name for p in (tmp_path / "out").glob("*.ppo.*.pt"))
    assert files and files[-1].startswith("s-") and files[-1].endswith(".ppo.000024.pt")
    assert not (tmp_path / "out" / "controller.pt").exists()  # no per-folder file any more

    b = PPOController(SPACE, seed=1, batch=8)  # a second worker: starts from A's policy
    ctx = SweepContext(a.ctx.study, SPACE, MnasReward.soft(5.0), tmp_path / "out", 48)
    b.before_sweep(ctx)
    assert b.consumed == first and b.updates == 3
    for k, v in a.modules_.state_dict().items():
        assert torch.equal(v, b.modules_.state_dict()[k]), k
    _sweep(b, tmp_path, 48, storage)
    everything = {t.number for t in _complete(storage)}
    assert len(everything) == 48 and b.consumed == everything
    # every trial learned from exactly once, across both workers
    assert b.updates * b.batch + len(b.pending) == 48
    a.sync()  # A, still attached, adopts B's newer policy and has nothing left to learn
    assert a.consumed == everything and a.updates == b.updates
    assert len(list((tmp_path / "out").glob("*.ppo.*.pt"))) <= 2  # older files pruned


def test_ppo_learns_trials_it_did_not_propose_and_ignores_an_earlier_study(tmp_path):
    """A study run by a sampler, then continued by PPO: PPO learns from all of it. State files
    of an earlier study of the same name in the folder are not adopted."""
    storage = _storage("journal", tmp_path)
    a = PPOController(SPACE, seed=0, batch=8)
    _sweep(a, tmp_path, 16, storage, study="s")
    stale = sorted((tmp_path / "out").glob("s-*.ppo.*.pt"))
    assert stale
    os.remove(tmp_path / "j.log")  # the study is gone; its state files stay
    cfg = SweepConfig(space=SPACE.name, accuracy="toy", sampler="random", trials=16, batch=8,
                      storage=storage, study_name="s", seed_reference=False,
                      out_dir=str(tmp_path / "out"), latency_target_ms=5.0)
    run_sweep(cfg, _Accuracy(), _Latency(), progress=False)
    b = PPOController(SPACE, seed=2, batch=8)
    _sweep(b, tmp_path, 24, storage)
    assert b.consumed == {t.number for t in _complete(storage)} and b.updates == 3


def test_gradient_checkpoint_of_another_study_is_not_resumed(tmp_path):
    storage = _storage("journal", tmp_path)

    def make():
        return GradientController(SPACE, seed=0, accuracy_model=_Linear(0.5, 0.01),
                                  latency_model=_Linear(1.0, 1.0), chains=2, steps=2, samples=4)

    a = make()
    _sweep(a, tmp_path, 8, storage, study="a")
    _sweep(make(), tmp_path, 8, storage, study="b")  # same folder: controller.pt is now b's
    again = make()
    ctx = SweepContext(optuna.load_study(study_name="a", storage=open_storage(storage)), SPACE,
                       MnasReward.soft(5.0), tmp_path / "out", 16)
    again.before_sweep(ctx)
    assert again.step == 0  # b's logits are not a's
    assert len(again.seen) == 8  # but a's trials are known from the study
    b2 = make()
    b2.before_sweep(SweepContext(optuna.load_study(study_name="b", storage=open_storage(storage)),
                                 SPACE, MnasReward.soft(5.0), tmp_path / "out", 16))
    assert b2.step > 0  # its own study's checkpoint is resumed


# -- checkpoints: tensors and plain values only --------------------------------------------------
class _Payload:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.target}",)


@pytest.mark.parametrize("ctrl", ["ppo", "gradient"])
def test_a_checkpoint_carrying_a_callable_is_refused(ctrl, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "controller.pt"
    c = PPOController(SPACE) if ctrl == "ppo" else GradientController(
        SPACE, accuracy_model=_Linear(0.5, 0.01), latency_model=_Linear(1.0, 1.0), chains=2)
    torch.save({"controller": ctrl, "cards": c.cards, "baseline": _Payload(marker)}, path)
    with pytest.raises(ValueError) as err:
        c.load(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "retrain" in msg
    assert not marker.exists()  # nothing ran


def test_a_crafted_state_file_in_the_shared_folder_is_refused(tmp_path):
    storage = _storage("journal", tmp_path)
    a = PPOController(SPACE, seed=0, batch=8)
    _sweep(a, tmp_path, 8, storage)
    marker = tmp_path / "pwned"
    forged = a.ctx.state_path("ppo", 999)
    torch.save({"controller": "ppo", "cards": a.cards, "x": _Payload(marker)}, forged)
    with pytest.raises(ValueError, match=forged.name):
        _sweep(PPOController(SPACE, seed=1, batch=8), tmp_path, 16, storage)
    assert not marker.exists()


def test_checkpoints_of_the_previous_format(tmp_path):
    """The format the controllers wrote before: plain-valued ones load; ones holding numpy
    scalars (a PPO baseline) are refused with a one-line delete-and-retrain message."""
    a = PPOController(SPACE, seed=3, batch=8)
    for _ in range(2):
        idx = a.propose(8)
        a.observe(idx, np.ones(8), np.ones(8), np.linspace(0, 1, 8))
    old = {"controller": "ppo", "modules": a.modules_.state_dict(), "start": a.start.detach().clone(),
           "opt": a.opt.state_dict(), "baseline": float(a.baseline), "updates": a.updates,
           "gen": a.gen.get_state(), "rng": a.rng.bit_generator.state,
           "pending": [(c[0].tolist(), c[1], c[2]) for c in a.pending], "cards": a.cards}
    torch.save(old, tmp_path / "plain.pt")
    b = PPOController(SPACE, seed=99, batch=8)
    assert b.load(tmp_path / "plain.pt") and a.propose(8) == b.propose(8)
    torch.save({**old, "baseline": np.float64(a.baseline)}, tmp_path / "numpy.pt")
    with pytest.raises(ValueError, match="numpy.pt is refused.*delete it and retrain"):
        PPOController(SPACE).load(tmp_path / "numpy.pt")
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(ValueError, match="torn.pt is unreadable"):
        PPOController(SPACE).load(tmp_path / "torn.pt")
