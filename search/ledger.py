"""The sweep's claims on a shared study: exactly ``trials`` COMPLETE, whoever dies.

A worker *claims* a trial by creating it RUNNING in one storage call, with its
parameters, its architecture string, its worker id and a claim token
(``Study.add_trial``'s template path: ``BaseStorage.create_new_trial``). Trial numbers are
assigned by the storage in creation order, so every worker sees the same order. A
claimed trial counts when fewer than ``trials`` *live* trials (RUNNING or COMPLETE)
have a lower number; others are PRUNED before they are evaluated. A count that holds
once holds until the tell (later trials have higher numbers, and failing only frees
places), so the study never holds more than ``trials`` COMPLETE, and a slot freed by a
dead worker is claimed again. Workers stop when the study holds ``trials`` COMPLETE,
after one last pass failing dead workers' claims (:meth:`Ledger.fail_dead`).

Optuna's samplers propose in a private in-memory *mirror* study fed with the shared
study's COMPLETE trials, so asking costs no storage round trip: per trial, one create,
one heartbeat (relational storages) and one tell.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Callable

from .storage import fail_dead_workers, is_rdb, record_heartbeats

POLL_S = 0.05
"""Seconds between looks at the study while every slot is taken by running trials."""
STALE_EVERY_S = 2.0
"""Seconds between stale-trial sweeps while slots are free."""


def trial_indices(trial, names: list[str]) -> tuple[int, ...] | None:
    """A trial's index vector: its ``idx`` attribute (canonical), else its parameters
    (trials written before claims, or by other tools); None when it has neither."""
    idx = trial.user_attrs.get("idx")
    if idx is not None and len(idx) == len(names):
        return tuple(int(v) for v in idx)
    if all(n in trial.params for n in names):
        return tuple(int(trial.params[n]) for n in names)
    return None


class Mirror:
    """An in-memory study with the sampler, fed with the shared study's COMPLETE trials."""

    def __init__(self, sampler, directions, dists):
        import optuna

        self.dists, self.names = dists, list(dists)
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self._seen: set[int] = set()

    def sync(self, trials) -> None:
        """Add the shared study's COMPLETE trials not seen yet."""
        from optuna.trial import TrialState, create_trial

        add = []
        for t in trials:
            if t.state != TrialState.COMPLETE or t.number in self._seen:
                continue
            self._seen.add(t.number)
            idx = trial_indices(t, self.names)
            if idx is not None:
                add.append(create_trial(params=dict(zip(self.names, idx)), distributions=self.dists,
                                        values=t.values, system_attrs=dict(t.system_attrs)))
        if add:
            self.study.add_trials(add)

    def ask(self, k: int) -> list[tuple[dict, dict]]:
        """``k`` proposals as (params, system attributes); the mirror forgets them (FAIL):
        they come back from the shared study once evaluated."""
        from optuna.trial import TrialState

        asked = [self.study.ask(self.dists) for _ in range(k)]
        frozen = {t.number: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        out = [(dict(t.params), dict(frozen[t.number].system_attrs)) for t in asked]
        for t in asked:
            self.study.tell(t, state=TrialState.FAIL)
        return out


class Ledger:
    """One worker's view of the shared study: slots, claims, tells."""

    def __init__(self, study, storage, worker: str, trials: int,
                 on_phase: Callable[[str], None] | None = None):
        self.study, self.storage, self.worker, self.n = study, storage, worker, trials
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.on_phase = on_phase or (lambda phase: None)
        self._seq = itertools.count()
        self._last_stale = 0.0
        self.trials: list = []

    # -- reading ----------------------------------------------------------------------------
    def refresh(self) -> list:
        """The study's trials now (cached: only unfinished and new ones are read)."""
        self.trials = self.study.get_trials(deepcopy=False)
        return self.trials

    def complete(self) -> int:
        from optuna.trial import TrialState

        return sum(t.state == TrialState.COMPLETE for t in self.trials)

    def live_numbers(self) -> list[int]:
        from optuna.trial import TrialState

        return sorted(t.number for t in self.trials if t.state in (TrialState.RUNNING, TrialState.COMPLETE))

    def free(self) -> int:
        """Slots left: ``trials`` minus live trials (after failing dead workers' trials)."""
        now = time.monotonic()
        free = self.n - len(self.live_numbers())
        if free <= 0 or now - self._last_stale > STALE_EVERY_S:
            self._last_stale = now
            self.fail_dead()
            free = self.n - len(self.live_numbers())
        return free

    def fail_dead(self) -> int:
        """One pass failing dead workers' unfinished trials (:func:`fail_dead_workers`), then
        a fresh view if any was failed; how many. A worker runs it on every stale sweep and
        once more when it finds the study full: a killed worker's surplus claims (beyond the
        last slot) would otherwise stay RUNNING, since no one claims after that."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fail_stale_trials is experimental
            n = fail_dead_workers(self.study, self.storage, self.trials)
        if n:
            self.refresh()
        return n

    def missing_references(self, refs: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
        """Reference networks with no live trial."""
        from optuna.trial import TrialState

        have = {t.user_attrs.get("seed_reference") for t in self.trials
                if t.state in (TrialState.RUNNING, TrialState.COMPLETE)}
        return [(name, idx) for name, idx in refs if name not in have]

    # -- writing ----------------------------------------------------------------------------
    def claim(self, params: dict, dists: dict, canon, attrs: dict,
              system_attrs: dict | None = None) -> tuple[int, str, tuple]:
        """Create one RUNNING trial carrying this worker's id, the canonical index vector
        (user attribute ``idx``) and, except on relational storages (where Optuna writes
        each parameter in its own queries), the parameters; (trial id, token, canonical)."""
        from optuna.trial import TrialState, create_trial

        token = f"{self.worker}#{next(self._seq)}"
        canon = tuple(int(v) for v in canon)
        if is_rdb(self.storage):
            params, dists = {}, {}
        tmpl = create_trial(state=TrialState.RUNNING, params=params, distributions=dists,
                            user_attrs={**attrs, "idx": list(canon), "claim": token},
                            system_attrs=system_attrs or {})
        tid = self.storage.create_new_trial(self.study_id, template_trial=tmpl)
        if is_rdb(self.storage):
            record_heartbeats(self.storage, [tid])
        return tid, token, canon

    def settle(self, claims: list[tuple[int, str, tuple]]) -> list[tuple[int, str, tuple]]:
        """The claims that count; the others are PRUNED now."""
        from optuna.trial import TrialState

        self.refresh()
        rank = {num: i for i, num in enumerate(self.live_numbers())}
        by_token = {t.user_attrs.get("claim"): t for t in self.trials if t.user_attrs.get("claim")}
        first_ref: dict[str, int] = {}
        for t in self.trials:
            ref = t.user_attrs.get("seed_reference")
            if ref and t.state in (TrialState.RUNNING, TrialState.COMPLETE):
                first_ref[ref] = min(first_ref.get(ref, t.number), t.number)
        keep = []
        for claim in claims:
            tid, token, _ = claim
            t = by_token.get(token)
            if t is None or t.state != TrialState.RUNNING:
                continue  # failed by another worker meanwhile
            ref = t.user_attrs.get("seed_reference")
            if rank.get(t.number, self.n) < self.n and (not ref or first_ref[ref] == t.number):
                keep.append(claim)
            else:
                self._finish(tid, TrialState.PRUNED)
        return keep

    def tell(self, tid: int, values: list[float], constraint: float | None = None) -> bool:
        """COMPLETE the claimed trial ``tid`` (FAIL if a value is not finite); False if it
        was finished meanwhile."""
        from optuna.trial import Trial, TrialState

        if not all(math.isfinite(v) for v in values):
            return self._finish(tid, TrialState.FAIL) and False
        if constraint is not None:
            Trial(self.study, tid).set_constraint("latency_ms", float(constraint))
        return self._finish(tid, TrialState.COMPLETE, values)

    def _finish(self, tid: int, state, values=None) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            return bool(self.storage.set_trial_state_values(tid, state, values))
        except UpdateFinishedTrialError:
            return False

    def wait(self) -> None:
        """Sleep a little while other workers' trials run."""
        time.sleep(POLL_S)
