"""Optuna storages for sweeps: opening a URL, workers' liveness, and a study's health.

``open_storage`` takes ``None`` (in memory), ``journal:PATH`` (Optuna's journal file),
``sqlite:///PATH`` or any SQLAlchemy URL such as ``postgresql+psycopg://user@host:5432/db``.
A bad URL, a missing folder or an unreachable server is a one-line ``ValueError``; nothing
is created but the file or database the URL names.

Liveness: every trial a worker claims carries its worker id (``host:pid``) from the
moment it exists. A RUNNING trial is failed when its worker is a dead process on this
host, when Optuna's heartbeat says it is stale (relational storages: ``heartbeat_interval``
/ ``grace_period`` and :func:`optuna.storages.fail_stale_trials`), or, on other storages,
when the worker's own heartbeat attribute is older than the grace period.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

HEARTBEAT_S = 10
"""Seconds between heartbeats of a worker's running trials."""
GRACE_S = 60
"""A RUNNING trial of another host with no heartbeat for this long is failed."""
HEARTBEAT_ATTR = "heartbeat"
"""User attribute holding the last heartbeat (epoch s) on storages without Optuna's."""


def worker_id() -> str:
    """This process as a worker: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_storage(url: str | None):
    """An Optuna storage for ``url`` (see the module docstring); ``ValueError`` in one line."""
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise ValueError("journal storage needs a file path: journal:./sweep.log")
        _need_folder(Path(path), url)
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot open storage {url}: {_one_line(exc)}") from None
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not a URL: use postgresql+psycopg://user@host/db, "
                         f"sqlite:///file.db, another SQLAlchemy URL, or journal:./file.log")
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except Exception as exc:  # unknown scheme, missing driver, malformed URL
        hint = (" (pip install 'mnas-surrogate[postgres]')" if url.startswith("postgres") else "")
        raise ValueError(f"storage {url}: {_one_line(exc)}{hint}") from None
    kw = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _need_folder(Path(parsed.database), url)
            _sqlite_wal(parsed.database)
        kw["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        # a commit returns before the server's WAL flush: a killed worker loses nothing (the
        # server has the row); a crashed *server* may drop its last ~0.6 s of commits, which
        # the ledger repairs (an untold trial goes stale and is claimed again)
        kw["engine_kwargs"] = {"pool_pre_ping": True,
                               "connect_args": {"options": "-c synchronous_commit=off"}}
    else:
        kw["engine_kwargs"] = {"pool_pre_ping": True}
    import warnings

    for attempt in range(5):  # workers creating a fresh database's tables at once race: retry
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S,
                                                     grace_period=GRACE_S, **kw)
                if parsed.get_backend_name() == "sqlite":
                    _sqlite_normal_sync(storage.engine)
                return storage
        except Exception as exc:  # sqlalchemy / driver errors: connection refused, bad database ...
            race = any(m in str(exc) for m in _CREATE_RACES)
            if attempt == 4 or not race:
                raise ValueError(f"cannot open storage {url}: {_one_line(exc)}") from None
            time.sleep(0.2 * (attempt + 1))


#: what a worker sees when another creates the same fresh database's schema at that moment
_CREATE_RACES = ("already exists", "UNIQUE constraint failed: alembic_version",
                 "duplicate key value violates unique constraint", "database is locked")


def _need_folder(path: Path, url: str) -> None:
    parent = path.expanduser().absolute().parent
    if not parent.is_dir():
        raise ValueError(f"storage {url}: folder {parent} does not exist")


def _sqlite_wal(path: str) -> None:
    """Put a sqlite file in WAL mode (persistent): one fsync per commit, readers never block."""
    import sqlite3

    try:
        con = sqlite3.connect(path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ValueError(f"cannot open storage sqlite:///{path}: {_one_line(exc)}") from None


def _sqlite_normal_sync(engine) -> None:
    """``PRAGMA synchronous=NORMAL`` on every connection: in WAL mode a commit no longer
    waits for an fsync; a killed process loses nothing, a power cut the last commits."""
    from sqlalchemy import event

    def _on_connect(dbapi_con, _record) -> None:
        dbapi_con.execute("PRAGMA synchronous=NORMAL")

    event.listen(engine, "connect", _on_connect)
    engine.dispose()  # connections opened while the schema was made reconnect with it


def is_rdb(storage) -> bool:
    """Whether ``storage`` is a relational one (Optuna heartbeats available)."""
    import optuna

    return isinstance(storage, optuna.storages.RDBStorage)


def record_heartbeats(storage, trial_ids) -> None:
    """One heartbeat for each of ``trial_ids`` (Optuna's on RDB, else a user attribute)."""
    for tid in trial_ids:
        if is_rdb(storage):
            storage.record_heartbeat(tid)
        else:
            storage.set_trial_user_attr(tid, HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """A thread beating for the trials in :attr:`trials` every :data:`HEARTBEAT_S` seconds."""

    def __init__(self, storage, interval: float = HEARTBEAT_S):
        self.storage, self.interval = storage, interval
        self.trials: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="mnas-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                record_heartbeats(self.storage, list(self.trials))
            except Exception:  # a finished trial or a storage hiccup: the next beat retries
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(t, storage, now: float, grace: float) -> bool:
    from optuna.trial import TrialState

    worker = t.user_attrs.get("worker", "")
    host, _, pid = worker.rpartition(":")
    if t.state == TrialState.WAITING:  # enqueued by an older version: nobody pops them now
        return True
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    started = t.datetime_start.timestamp() if t.datetime_start else now
    if not worker:  # popped by an older version before its worker id was set
        return now - started > grace
    if is_rdb(storage):
        return False  # another host's trial on RDB: Optuna's heartbeat decides
    last = max(started, float(t.user_attrs.get(HEARTBEAT_ATTR, 0.0)))
    return now - last > grace


def fail_dead_workers(study, storage, trials=None, *, grace: float = GRACE_S) -> int:
    """Fail the unfinished trials of dead workers (see the module docstring); how many."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    now, n = time.time(), 0
    for t in trials:
        if t.state not in (TrialState.RUNNING, TrialState.WAITING) or not _stale(t, storage, now, grace):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(tid, TrialState.FAIL):
                n += 1
        except UpdateFinishedTrialError:  # another worker failed (or its owner finished) it
            pass
    if is_rdb(storage):
        optuna.storages.fail_stale_trials(study)
    return n


def study_health(study, trials: int | None = None) -> dict:
    """Counts of a study's trials by state, duplicated numbers and claims, lost trials."""
    from collections import Counter

    from optuna.trial import TrialState

    all_ = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in all_)
    numbers = Counter(t.number for t in all_)
    claims = Counter(t.user_attrs["claim"] for t in all_ if "claim" in t.user_attrs)
    done = [t for t in all_ if t.state == TrialState.COMPLETE]
    archs = Counter(t.user_attrs.get("seed_reference") for t in done if t.user_attrs.get("seed_reference"))
    out = {"complete": states.get("COMPLETE", 0), "running": states.get("RUNNING", 0),
           "waiting": states.get("WAITING", 0), "fail": states.get("FAIL", 0),
           "pruned": states.get("PRUNED", 0),
           "duplicate_numbers": sum(c - 1 for c in numbers.values() if c > 1),
           "duplicate_claims": sum(c - 1 for c in claims.values() if c > 1),
           "duplicate_references": sum(c - 1 for c in archs.values() if c > 1)}
    if trials is not None:
        out["lost"] = max(0, trials - out["complete"])
        out["extra"] = max(0, out["complete"] - trials)
    return out
