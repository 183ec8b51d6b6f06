"""One writer per table: a lock file beside it, held with ``flock`` for a whole job.

``<table>.lock`` (e.g. ``anb_ops.csv.lock``) is locked exclusively and without waiting
by every process that appends to the table (``mnas measure ops``/``models`` without
``--device``, ``mnas table merge``). A second writer is refused at once with
:class:`TableBusy`, one line naming the holder: the pid, host, start time and command
the holder wrote into the lock file. The kernel drops the lock when its process dies
(SIGKILL included), so a killed writer never blocks the next one; the holder removes the
file when it is done. Measuring with ``--device`` writes per-device part tables under
chunk claims instead (:mod:`surrogate.measure.claims`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .atomic import now_iso

__all__ = ["TableBusy", "TableLock", "lock_path"]


class TableBusy(ValueError):
    """Another process holds the table's lock (the message names it)."""


def lock_path(table_path: str | os.PathLike) -> Path:
    """The lock file of a table: ``<table>.lock`` beside it."""
    p = Path(table_path)
    return p.with_name(p.name + ".lock")


def _holder(fd: int) -> dict:
    """What the holder wrote into the lock file (it writes right after locking: wait a little)."""
    for _ in range(20):
        try:
            data = os.pread(fd, 4096, 0)
            info = json.loads(data) if data else None
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            return info
        time.sleep(0.01)
    return {}


class TableLock:
    """The write lock of ``table_path`` (a context manager; :meth:`acquire`, :meth:`release`)."""

    def __init__(self, table_path: str | os.PathLike, purpose: str = "writing") -> None:
        self.table = Path(table_path)
        self.path = lock_path(self.table)
        self.purpose = purpose
        self._fd: int | None = None
        self._made: list[Path] = []

    def acquire(self) -> "TableLock":
        """Lock now or raise :class:`TableBusy`; creates the table's folder if needed."""
        made, d = [], self.path.parent
        while not d.exists():
            made.append(d)
            d = d.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._made = made
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _holder(fd)
                os.close(fd)
                raise TableBusy(self._busy_message(info)) from None
            try:  # the holder before us may have removed the file between our open and lock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "started": now_iso(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def _busy_message(self, info: dict) -> str:
        who = (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, since "
               f"{info.get('started', '?')}" if info else "a process that has not said who it is")
        cmd = f" ({info['command']})" if info.get("command") else ""
        return (f"{self.table}: another process is {info.get('purpose', 'writing')} this table: "
                f"{who}{cmd}; wait for it to finish, or stop it, then run this again")

    def release(self) -> None:
        """Remove the lock file and unlock (a no-op when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # still locked: nobody takes the old file in between
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if not self.table.exists():  # a refused job leaves no folder it made behind
            for d in self._made:
                with contextlib.suppress(OSError):
                    d.rmdir()

    def __enter__(self) -> "TableLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
