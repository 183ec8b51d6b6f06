"""What a sweep's study is: the settings that define its trials' values, recorded once.

A study's trials are comparable only while every worker computes them the same way, so
the worker that *creates* a study records, in the study user attribute
:data:`RECORD_ATTR`, the settings that define its objective values and the reward read
from them:

- ``space`` and ``decisions`` (a digest of the decisions' names and sizes);
- ``profile``, ``latency`` (``predicted`` or ``measured``), ``latency_fingerprint`` (the
  content of the predictor folder or the timed table; ``predictor`` names the folder);
- ``accuracy`` and ``accuracy_fingerprint``;
- ``reward`` and ``reward_weights`` (alpha, beta), ``latency_target_ms`` (given, or the
  creator's default) and ``latency_budget_ms`` (the hard budget, when one was given);
- ``directions`` of the two objectives.

Creation is atomic: only the worker whose ``create_new_study`` succeeds writes the
record, the next call after it; a worker that finds the study waits for the record (a
killed creator's study, or one made before studies had records, is adopted). A worker
whose settings differ is refused with a :class:`StudyMismatch` (a ``ValueError``) that
names each differing setting, both values and the study. What may differ per worker is
not recorded: sampler or controller, seed, trial count, batch, worker, output folder.

:class:`SweepConfig` holds a sweep's settings and builds its objectives. Each worker's own
description (device, runtime, latency kind, package versions) goes with its trials
instead: :func:`trial_metadata`.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

from surrogate.measure.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:
    from surrogate.measure.profiles import DeviceProfile

RECORD_ATTR = "identity"
"""The study user attribute holding the record."""
RECORD_WAIT_S = 10.0
"""How long a worker that found a fresh study waits for its creator's record."""
MAX_TARGET_MS = 1e6
"""The largest latency target accepted (ms)."""
DIRECTIONS = ("maximize", "minimize")
"""The directions of a sweep's objectives: accuracy, latency (ms)."""
SAMPLERS = ("nsga2", "tpe", "random")
"""The Optuna samplers a sweep may use."""

#: (key, label, keys whose difference makes this one's redundant in a message)
SETTINGS = (
    ("space", "space", ()),
    ("decisions", "space decisions", ("space",)),
    ("profile", "profile", ()),
    ("latency", "latency", ()),
    ("latency_fingerprint", "latency predictor", ("space", "profile", "latency")),
    ("accuracy", "accuracy objective", ()),
    ("accuracy_fingerprint", "accuracy objective", ("space", "accuracy")),
    ("reward", "reward", ()),
    ("reward_weights", "reward weights", ("reward",)),
    ("latency_target_ms", "latency target", ()),
    ("directions", "objective directions", ()),
)


class StudyMismatch(ValueError):
    """This run's settings differ from those the study was created with."""


# -- input checks ---------------------------------------------------------------------------
def check_latency_target(target) -> None:
    """``ValueError`` unless ``target`` is None or a finite latency in (0, MAX_TARGET_MS] ms."""
    if target is None:
        return
    try:
        t = float(target)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and 0 < t <= MAX_TARGET_MS):
        top = f"{MAX_TARGET_MS:g}".replace("e+0", "e").replace("e+", "e")
        raise ValueError(f"--latency-target must be a finite latency in ms, 0 < T <= {top}, got {target!r}")


def check_study_name(name: str | None, as_path: bool) -> None:
    """``ValueError`` for an empty study name or one with control characters; when the name
    is also a folder name (``as_path``: no output folder given), for one that would leave
    its folder (separators, ``.``, ``..``)."""
    if name is None:
        return
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--study-name must not be empty, got {name!r}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ValueError(f"--study-name must not hold control characters, got {name!r}")
    if as_path and ("/" in name or "\\" in name or name in (".", "..")):
        raise ValueError(f"--study-name {name!r} names the output folder (mnas_runs/<study>) and must "
                         f"stay inside it: no '/', '\\', '.' or '..' (or give --out)")


# -- the settings of a sweep ------------------------------------------------------------
@dataclass
class SweepConfig:
    """Settings of one sweep (JSON-able)."""

    space: str = "anb"
    profile: str = DEFAULT_PROFILE
    accuracy: str = "anb"
    sampler: str = "nsga2"
    controller: str | None = None
    trials: int = 300
    seed: int = 0
    batch: int = 8
    storage: str | None = None
    study_name: str | None = None
    latency_target_ms: float | None = None
    reward: str = "soft"
    seed_reference: bool = True
    out_dir: str | None = None
    data: str | None = None

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials must be a positive integer, got {self.trials!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        check_latency_target(self.latency_target_ms)
        check_study_name(self.study_name, as_path=self.out_dir is None)
        if self.reward not in ("soft", "hard"):
            raise ValueError(f"reward must be 'soft' or 'hard', got {self.reward!r}")

    @property
    def name(self) -> str:
        """The study name: given, else derived from space, profile, objective, method and seed."""
        how = self.controller or self.sampler
        return self.study_name or f"{self.space}-{self.profile}-{self.accuracy}-{how}-seed{self.seed}"

    @cached_property
    def device(self) -> DeviceProfile:
        """The measuring device profile ``profile``, resolved once (``ValueError`` for an
        unknown or predict-only one)."""
        return resolve_device(self.profile)

    # -- the objectives ---------------------------------------------------------------------
    def check_accuracy(self, accuracy) -> None:
        """``ValueError`` unless the accuracy objective is one of this sweep's space."""
        if accuracy.space.name != self.space:
            raise ValueError(f"accuracy objective {accuracy.name!r} is for space {accuracy.space.name!r}, "
                             f"not {self.space!r}")

    def accuracy_objective(self, accuracy_file: str | None = None):
        """The accuracy objective ``accuracy`` (with ``data``; ``accuracy_file``: the model
        file of ``ofa``), checked against the space."""
        from .accuracy import get_accuracy

        kw: dict[str, Any] = {"data": self.data}
        if accuracy_file is not None:
            if self.accuracy != "ofa":
                raise ValueError(f"--accuracy-file is read by --accuracy ofa, not {self.accuracy!r}")
            kw["accuracy_file"] = accuracy_file
        if self.accuracy == "ofa" and self.space.startswith("ofa-"):
            kw["space"] = self.space  # OFA's encoding is the same for both supernet widths
        acc = get_accuracy(self.accuracy, **kw)
        self.check_accuracy(acc)
        return acc

    def latency_objective(self, kind: str = "predicted", *, predictor: str | None = None,
                          source: str = "auto", published=None, progress: bool = True,
                          log: Callable[[str], None] | None = None) -> tuple[Any, dict | None]:
        """(the latency objective, a note on where its tables came from, or None).

        ``published``: a predict-only device (its shipped predictor, nothing timed);
        ``kind`` ``measured``: the profile's end-to-end table; else ``predictor``, or
        the shipped or this host's predictor as ``source`` chooses (:func:`.latency.host_latency`).
        """
        from .latency import PredictedLatency

        if published is not None:
            return PredictedLatency(self.profile, self.space, predictor), {
                "source": "published", "chosen": "published", "device": published.name,
                "reason": f"predict-only device: {published.description}; finalists are not re-timed"}
        if kind == "measured":
            from .latency import MeasuredLatency

            if predictor:
                raise ValueError("--predictor applies to --latency predicted only")
            return MeasuredLatency(self.profile, self.space), None
        if predictor:
            return PredictedLatency(self.profile, self.space, predictor), None
        from .latency import host_latency

        return host_latency(self.profile, self.space, source=source, progress=progress,
                            log=log or (lambda *a: None))


def resolve_device(profile: str) -> DeviceProfile:
    """The device profile named ``profile``: the one place a sweep resolves a name."""
    from surrogate.measure.profiles import get_profile

    return get_profile(profile)


# -- the record -------------------------------------------------------------------------------
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def settings_of(cfg, directions=DIRECTIONS) -> dict:
    """The recorded settings that ``cfg`` alone tells (the CLI checks them before any
    objective is built); ``latency_target_ms`` None: not given, the study's is taken."""
    from .reward import MnasReward

    r = MnasReward.from_name(cfg.reward, 1.0)
    target = None if cfg.latency_target_ms is None else float(cfg.latency_target_ms)
    return {"space": cfg.space, "profile": cfg.profile, "accuracy": cfg.accuracy,
            "reward": cfg.reward, "reward_weights": [r.alpha, r.beta], "latency_target_ms": target,
            "latency_budget_ms": target if cfg.reward == "hard" else None,
            "directions": list(directions)}


def study_record(cfg, space, accuracy, latency, directions=DIRECTIONS) -> dict:
    """Every recorded setting of a sweep of ``cfg`` with these objectives."""
    describe = getattr(latency, "describe", None)
    lat = describe() if describe else {}
    fp = getattr(latency, "fingerprint", None) or f"{type(latency).__module__}.{type(latency).__qualname__}"
    return {**settings_of(cfg, directions), "accuracy": getattr(accuracy, "name", cfg.accuracy),
            "decisions": _digest([[d.name, d.n] for d in space.decisions]),
            "latency": lat.get("kind"), "latency_fingerprint": fp, "predictor": lat.get("predictor"),
            "accuracy_fingerprint": getattr(accuracy, "fingerprint", None), "format": 1}


def storage_label(url: str | None) -> str:
    """The storage as messages name it (after "in"): ``memory``, or the URL without its password."""
    return "memory" if url is None else re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _show(key: str, rec: dict) -> str:
    v = rec.get(key)
    if key == "latency_target_ms":
        return f"{v:g} ms"
    if key == "latency_fingerprint":
        return f"{rec['predictor']!r} ({v})" if rec.get("predictor") else repr(v)
    if key == "accuracy_fingerprint":
        return f"{rec.get('accuracy')!r} ({v})"
    if key in ("directions", "reward_weights"):
        return "(" + ", ".join(map(str, v or [])) + ")"
    return repr(v)


def _same(key: str, a, b) -> bool:
    if key == "latency_target_ms":
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def differences(stored: dict, wanted: dict) -> list[str]:
    """The keys of :data:`SETTINGS` whose values differ (only those both give; a difference
    implied by another listed one is left out)."""
    implied_by = {k: parents for k, _, parents in SETTINGS}
    diff = [k for k in implied_by
            if wanted.get(k) is not None and stored.get(k) is not None and not _same(k, stored[k], wanted[k])]
    return [k for k in diff if not any(p in diff for p in implied_by[k])]


def mismatch_message(name: str, where: str, stored: dict, wanted: dict, keys: list[str]) -> str:
    """One line naming each differing setting, both values and the study."""
    labels = {k: label for k, label, _ in SETTINGS}
    was = ", ".join(f"{labels[k]} {_show(k, stored)}" for k in keys)
    if len(keys) == 1:
        asks = _show(keys[0], wanted)
    else:
        asks = ", ".join(f"{labels[k]} {_show(k, wanted)}" for k in keys)
    return (f"study {name!r} in {where} was created with {was}; this run asks for {asks} "
            f"(use another --study-name)")


def _refuse_if_different(name: str, where: str, stored: dict, wanted: dict) -> None:
    keys = differences(stored, wanted)
    if keys:
        raise StudyMismatch(mismatch_message(name, where, stored, wanted, keys))


# -- opening a study ----------------------------------------------------------------------------
def _study_id(storage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def check_study(storage, name: str, wanted: dict, where: str) -> None:
    """Refuse early when the study exists with a record that differs from ``wanted``
    (partial settings: only the keys given are compared); creates nothing."""
    sid = _study_id(storage, name)
    if sid is None:
        return
    stored = storage.get_study_user_attrs(sid).get(RECORD_ATTR)
    if isinstance(stored, dict):
        _refuse_if_different(name, where, stored, wanted)


def _legacy(attrs: dict) -> dict:
    """The settings an older version left in a study (its last worker's ``config``)."""
    cfg = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    out = {k: cfg[k] for k in ("space", "profile", "accuracy", "reward") if cfg.get(k) is not None}
    if isinstance(attrs.get("latency_target_ms"), (int, float)):
        out["latency_target_ms"] = float(attrs["latency_target_ms"])
        if cfg.get("reward") == "hard" and cfg.get("latency_target_ms") is not None:
            out["latency_budget_ms"] = out["latency_target_ms"]
    return out


def _await_record(storage, sid: int, wait_s: float) -> tuple[dict | None, dict]:
    """The study's record, waited for while its creator may still be writing it; (None,
    attributes) for a study that will not get one (trials or an older version's ``config``,
    or nothing after ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        attrs = storage.get_study_user_attrs(sid)
        rec = attrs.get(RECORD_ATTR)
        if isinstance(rec, dict):
            return rec, attrs
        if "config" in attrs or storage.get_n_trials(sid) or time.monotonic() > deadline:
            return None, attrs
        time.sleep(0.05)


def open_study(storage, name: str, wanted: dict, *, where: str, sampler,
               default_target: Callable[[], float], created_attrs: dict | None = None,
               wait_s: float | None = None):
    """Create or join the study ``name`` for the settings ``wanted`` (:func:`study_record`);
    (the study, the record in force). The creator writes the record (its latency target:
    given, else ``default_target()``) and ``created_attrs``; a joiner whose settings
    differ is refused with :class:`StudyMismatch`, and nothing is written."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError
    from optuna.study import StudyDirection

    directions = [StudyDirection[d.upper()] for d in wanted["directions"]]
    record = None
    sid = _study_id(storage, name)
    if sid is None:
        rec = dict(wanted)
        if rec["latency_target_ms"] is None:
            rec["latency_target_ms"] = float(default_target())
        try:
            sid = storage.create_new_study(directions, name)
        except DuplicatedStudyError:  # another worker created it a moment ago
            sid = storage.get_study_id_from_name(name)
        else:
            storage.set_study_user_attr(sid, RECORD_ATTR, rec)
            record = rec
            for key, value in (created_attrs or {}).items():
                storage.set_study_user_attr(sid, key, value)
    if record is None:
        have = [d.name.lower() for d in storage.get_study_directions(sid)]
        _refuse_if_different(name, where, {"directions": have}, wanted)
        record, attrs = _await_record(storage, sid, RECORD_WAIT_S if wait_s is None else wait_s)
        if record is None:  # made by an older version, or its creator died before the record
            old = _legacy(attrs)
            _refuse_if_different(name, where, old, wanted)
            record = dict(wanted)
            if record["latency_target_ms"] is None:  # the study's target (and budget), else the default
                record["latency_target_ms"] = old.get("latency_target_ms") or float(default_target())
                record["latency_budget_ms"] = old.get("latency_budget_ms")
            storage.set_study_user_attr(sid, RECORD_ATTR, record)
            record = storage.get_study_user_attrs(sid)[RECORD_ATTR]  # a concurrent adopter's, maybe
        _refuse_if_different(name, where, record, wanted)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler), record


# -- what each worker records ------------------------------------------------------------------
def trial_metadata(cfg, latency) -> dict:
    """User attributes every trial of this worker carries: device, runtime, latency kind,
    package versions (computed once; JSON-able)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    import optuna

    try:
        prof = cfg.device
        runtime, rt_versions = prof.runtime, prof.runtime_versions()
    except (ValueError, KeyError, ImportError):  # a profile this build does not know
        runtime, rt_versions = None, {}
    try:
        ours = version("mnas-surrogate")
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        ours = None
    describe = getattr(latency, "describe", None)
    return {"device": cfg.profile, "runtime": runtime,
            "latency_kind": (describe() if describe else {}).get("kind"),
            "versions": {"mnas-surrogate": ours, "optuna": optuna.__version__,
                         "numpy": np.__version__, "python": platform.python_version(),
                         **{k: v for k, v in rt_versions.items() if isinstance(v, str)}}}
