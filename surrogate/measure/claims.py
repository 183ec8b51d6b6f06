"""Several devices measuring one table: claim files over the chunks of one job.

A claimed job is planned once: its full item list (row keys, in the job's order) is
cut into chunks of ``chunk`` rows and written to ``<claims>/plan.json``; a process
that brings another list or chunk size is refused. Each measuring process (one per
device: a pinned core standing in for a device, or a phone's adb serial) then loops:

1. take the first chunk that has no done marker and whose lock file it can lock
   (``fcntl.flock``, exclusive, non-blocking). The kernel drops the lock when the
   process dies, SIGKILL included, so a killed device strands no chunk and nothing
   has to time out;
2. time the rows of the chunk that no part table holds yet (a device killed after
   writing its rows but before the done marker has nothing redone);
3. append them to its own part table ``<stem>.parts/<device>.csv`` (fsynced, with
   that device's provenance), write the chunk's done marker, unlock.

:func:`merge_parts` then joins the parts into the table itself: one clock and one
estimator, reference-paired rows put on the table's base, and every session of every
device (killed ones included) in the provenance.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from ..atomic import write_json_atomic
from ..tables import Table
from .pinning import allowed_cpus

if TYPE_CHECKING:
    from .profiles import DeviceProfile

__all__ = ["SharedJob", "share_job", "chunks_of", "ClaimError", "Device", "parse_device", "parts_dir", "part_path", "claims_dir", "Claim",
           "ChunkClaims", "claims_status"]

_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


class ClaimError(ValueError):
    """A claimed job that cannot go on: a bad device, or a plan of another job."""


@dataclass(frozen=True)
class Device:
    """One measuring device: ``name`` (its part table's name), and either the core a
    local profile pins its timing to or the adb serial of a phone."""

    name: str
    pin_core: int | None = None
    serial: str | None = None


def parse_device(spec: str) -> Device:
    """``core:N`` (this machine's core N as a stand-in device), ``adb:SERIAL`` (a phone),
    or a bare name (this process as is, e.g. one per machine sharing a folder)."""
    kind, _, value = spec.partition(":")
    if kind == "core" and value.isdigit():
        return Device(f"core{int(value)}", pin_core=int(value))
    if kind == "adb" and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", value):
        return Device("adb-" + re.sub(r"[^A-Za-z0-9-]", "-", value), serial=value)
    if ":" not in spec and _DEVICE_NAME.fullmatch(spec) and kind not in ("core", "adb"):
        return Device(spec)
    raise ClaimError(f"device must be core:N, adb:SERIAL or a name of letters, digits and '-', "
                     f"got {spec!r}")


def parts_dir(table_path: str | os.PathLike) -> Path:
    """Folder of the per-device part tables of ``table_path``: ``<stem>.parts/``."""
    p = Path(table_path)
    return p.with_name(p.stem + ".parts")


def part_path(table_path: str | os.PathLike, device: str) -> Path:
    """The part table of ``device``: ``<stem>.parts/<stem>_<device>.csv`` (a tagged name of
    the same kind, so every table tool reads it)."""
    p = Path(table_path)
    sep = "-" if re.search(r"_(ops|models)_[A-Za-z0-9-]+$", p.stem) else "_"
    return parts_dir(p) / f"{p.stem}{sep}{device}.csv"


def claims_dir(table_path: str | os.PathLike) -> Path:
    """Default folder of the claim files of ``table_path``: ``<stem>.claims/``."""
    p = Path(table_path)
    return p.with_name(p.stem + ".claims")


def _keys_sha(keys: Sequence[str]) -> str:
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()


def _create_once(path: Path, payload: dict) -> bool:
    """Write ``payload`` to ``path`` unless it exists (atomic: link of a complete file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Claim:
    """A locked chunk: its index, its keys, and the lock (released by :meth:`finish` or
    :meth:`release`)."""

    index: int
    keys: list[str]
    _fd: int | None = field(default=None, repr=False)
    _done_path: Path | None = field(default=None, repr=False)
    worker: str = ""

    def finish(self, rows: int) -> None:
        """The chunk's rows are on disk: write its done marker and unlock."""
        if self._done_path is not None:
            write_json_atomic(self._done_path, {"chunk": self.index, "worker": self.worker,
                                                "rows": rows, "pid": os.getpid(),
                                                "host": socket.gethostname()})
        self.release()

    def release(self) -> None:
        """Unlock without marking done (another device may take the chunk)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class ChunkClaims:
    """The claim files of one job in ``directory``, used by the device ``worker``.

    ``plan(keys, chunk)`` fixes (or checks) the chunks; ``take(held)`` locks the next
    free chunk, ``held()`` giving the keys on disk in any part table (read after the
    lock, so rows a killed holder wrote are seen).
    """

    def __init__(self, directory: str | os.PathLike, worker: str) -> None:
        self.dir = Path(directory)
        self.worker = worker
        self.chunks: list[list[str]] = []

    def plan(self, keys: Sequence[str], chunk: int, job: dict | None = None) -> list[list[str]]:
        """Cut ``keys`` into chunks of ``chunk``; the first process writes the plan, the
        others must bring the same keys, chunk size and ``job`` (e.g. profile, clock and
        estimator; :class:`ClaimError` otherwise)."""
        if chunk < 1:
            raise ClaimError(f"chunk must be >= 1, got {chunk}")
        keys = list(keys)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "done").mkdir(exist_ok=True)
        plan = {"version": 1, "items": len(keys), "chunk": chunk, "keys_sha256": _keys_sha(keys),
                "job": dict(job or {})}
        path = self.dir / "plan.json"
        if not _create_once(path, plan):
            have = json.loads(path.read_text())
            if have.get("job") != plan["job"] and {k: have.get(k) for k in plan if k != "job"} == {
                    k: v for k, v in plan.items() if k != "job"}:
                raise ClaimError(f"{path} plans the same rows with {have.get('job')}, this device "
                                 f"was started with {plan['job']}; every device of a job measures "
                                 f"with one profile, clock and estimator")
            if {k: have.get(k) for k in plan} != plan:
                raise ClaimError(
                    f"{path} plans another job ({have.get('items')} rows in chunks of "
                    f"{have.get('chunk')}; this one: {len(keys)} in chunks of {chunk}); give the "
                    f"same space, --limit/--random/--archs and --chunk, or another --claims folder")
        self.chunks = [keys[i: i + chunk] for i in range(0, len(keys), chunk)]
        return self.chunks

    def _done(self, i: int) -> Path:
        return self.dir / "done" / f"chunk-{i:06d}.json"

    def take(self, held: Callable[[], set[str]]) -> Iterator[Claim]:
        """Lock free chunks one at a time, first to last; the caller finishes (or releases)
        each before asking for the next. Chunks whose keys are all ``held`` are marked done."""
        for i, keys in enumerate(self.chunks):
            if self._done(i).exists():
                continue
            fd = os.open(self.dir / f"chunk-{i:06d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # another device has it
            if self._done(i).exists():  # finished between the check and the lock
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"worker": self.worker, "pid": os.getpid(),
                                     "host": socket.gethostname()}).encode())
            have = held()
            claim = Claim(i, [k for k in keys if k not in have], fd, self._done(i), self.worker)
            if not claim.keys:
                claim.finish(0)
                continue
            try:
                yield claim
            finally:
                claim.release()  # a no-op after finish()


@dataclass
class SharedJob:
    """One device's share of a job several devices measure (:mod:`.claims`)."""

    device: Device
    claims: ChunkClaims
    main: Table
    folder: Path

    def held(self) -> set[str]:
        """Keys on disk in the table or in any device's part (read only: another device may be
        appending to its part, so a torn last row is skipped, never cut off here)."""
        keys = {r[self.main.key] for r in self.main.read(ignore_torn=True)}
        pdir = parts_dir(self.main.path)
        for p in sorted(pdir.glob("*.csv")) if pdir.is_dir() else []:
            keys |= {r[self.main.key] for r in
                     Table(p, self.main.columns, self.main.key).read(ignore_torn=True)}
        return keys


def chunks_of(todo: list, items: list, chunk: int, shared: SharedJob | None):
    """``(first_row, items, claim)`` per chunk: in order, or claimed one at a time."""
    if shared is None:
        for c0 in range(0, len(todo), chunk):
            yield c0, todo[c0: c0 + chunk], None
        return
    by_key = {it[0]: it for it in items}
    for claim in shared.claims.take(shared.held):
        yield claim.index * chunk, [by_key[k] for k in claim.keys], claim


def share_job(table: Table, items: list, chunk: int, profile: DeviceProfile, device: str | None,
           claims: str | os.PathLike | None) -> tuple[Table, DeviceProfile, SharedJob | None]:
    """This device's part table, profile (its core) and claims; unchanged without ``device``."""
    if device is None:
        if claims is not None:
            raise ValueError("claims needs a device (--device core:N, adb:SERIAL or a name)")
        return table, profile, None
    dev = parse_device(device)  # availability (with the serial) is checked by the job
    if dev.pin_core is not None:
        if profile.pin_core is None:
            raise ValueError(f"device {device!r}: profile {profile.name!r} does not pin a local "
                             f"core; use adb:SERIAL or a name")
        if dev.pin_core not in allowed_cpus():
            raise ValueError(f"device {device!r}: core {dev.pin_core} is not allowed here "
                             f"(allowed: {allowed_cpus()})")
        profile = dataclasses.replace(profile, pin_core=dev.pin_core)
    part = Table(part_path(table.path, dev.name), table.columns, table.key)
    for t in (table, part):  # a file that is not a table is refused before anything is made
        t.read(ignore_torn=True)
    cl = ChunkClaims(claims if claims is not None else claims_dir(table.path), dev.name)
    cl.plan([it[0] for it in items], chunk, job={"profile": profile.name, "clock": profile.clock,
                                                 "estimator": profile.estimator})
    return part, profile, SharedJob(dev, cl, table, table.path.parent)


def claims_status(directory: str | os.PathLike) -> dict:
    """Chunks done, being measured now (locked) and free, and done chunks per device."""
    d = Path(directory)
    plan_p = d / "plan.json"
    if not plan_p.is_file():
        raise ClaimError(f"{d} holds no claimed job (no plan.json)")
    plan = json.loads(plan_p.read_text())
    n = -(-plan["items"] // plan["chunk"])
    done, by_worker, active = 0, {}, []
    for i in range(n):
        marker = d / "done" / f"chunk-{i:06d}.json"
        if marker.exists():
            done += 1
            w = json.loads(marker.read_text()).get("worker", "?")
            by_worker[w] = by_worker.get(w, 0) + 1
            continue
        lock = d / f"chunk-{i:06d}.lock"
        if lock.exists():
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                active.append(i)
            finally:
                os.close(fd)
    return {"chunks": n, "done": done, "active": active, "free": n - done - len(active),
            "done_by_device": by_worker, "items": plan["items"], "chunk": plan["chunk"]}
