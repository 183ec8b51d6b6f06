"""Core pinning and allocator tuning for the CPU runners: all CPU-affinity code is here.

Pinning: single-threaded runtimes execute on the calling thread, and the CPU
profiles pin every thread of the process to one core (the last allowed one by
default) the first time a runner times, so a converter or other work can use
the remaining cores (:func:`free_cpus`); conversion workers and busy-loop processes
are pinned with :func:`pin_process` / :func:`spawn_pinned`.

glibc malloc (cpu-torch): eager torch allocates and frees activation buffers
every run; glibc returns big blocks to the OS with mmap/munmap, whose page
faults add noise. ``tune_glibc_malloc`` raises the mmap and trim thresholds
with ``mallopt`` at run time (the same effect as starting the process with
``MALLOC_MMAP_THRESHOLD_=... MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...``,
which glibc only reads at start-up).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from typing import Iterator, Sequence

__all__ = ["allowed_cpus", "free_cpus", "pin_process", "pinned", "resolve_core", "spawn_pinned",
           "tune_glibc_malloc"]


def allowed_cpus() -> list[int]:
    """CPUs this process may run on, sorted (all of ``os.cpu_count()`` without affinity support)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def resolve_core(core: int) -> int:
    """Map -1 (last allowed CPU) or a CPU id to a CPU id this process may use."""
    cpus = allowed_cpus()
    if core == -1:
        return cpus[-1]
    if core not in cpus:
        raise ValueError(f"cannot pin to core {core}: allowed cores are {cpus}")
    return core


def pin_process(cpus: int | Sequence[int]) -> set[int]:
    """Pin every thread of this process to ``cpus``; returns the previous mask.

    ``os.sched_setaffinity(0, ...)`` changes only the calling thread on Linux,
    so each task in /proc/self/task is set too (runtime thread pools included).
    Child processes started afterwards inherit the mask: give conversion
    workers their own cores explicitly (``Runner.free_cpus``).
    """
    mask = {cpus} if isinstance(cpus, int) else set(cpus)
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, mask)
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = []
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, mask)
    return previous


def free_cpus(allowed: Sequence[int], pin_core: int | None, pinned_core: int | None = None) -> list[int]:
    """The cores of ``allowed`` left for other work when timing pins ``pin_core`` (-1: the last).

    ``pinned_core`` is the core already pinned, if any. Compute converter affinity
    from the cores allowed *before* pinning: after it the whole process is on the
    timing core, so a worker spawned later would share it. Empty on a 1-core box.
    """
    core = pinned_core
    if core is None and pin_core is not None:
        core = allowed[-1] if pin_core == -1 else pin_core
    return [c for c in allowed if c != core]


def spawn_pinned(argv: Sequence[str], core: int) -> subprocess.Popen:
    """Start ``argv`` as a process and pin it to ``core`` (from the parent: no ``preexec_fn``,
    which is unsafe in a threaded parent)."""
    proc = subprocess.Popen(list(argv))
    try:
        os.sched_setaffinity(proc.pid, {core})
    except OSError:
        proc.kill()
        proc.wait()
        raise
    return proc


@contextlib.contextmanager
def pinned(core: int = -1) -> Iterator[int]:
    """Context manager: pin the process to one core, restore the mask after."""
    c = resolve_core(core)
    previous = pin_process(c)
    try:
        yield c
    finally:
        pin_process(previous)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_glibc_malloc(
    mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20
) -> dict[str, int] | None:
    """Keep freed blocks in the heap (glibc ``mallopt``); None when not glibc.

    Equivalent env vars (read only at process start): MALLOC_MMAP_THRESHOLD_,
    MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_. glibc caps the mmap threshold at
    32 MiB on 64-bit (HEAP_MAX/2); larger values are clamped by mallopt failing,
    so we retry with the cap.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for param, key, value in (
        (_M_MMAP_THRESHOLD, "mmap_threshold", mmap_threshold),
        (_M_TRIM_THRESHOLD, "trim_threshold", trim_threshold),
        (_M_TOP_PAD, "top_pad", top_pad),
    ):
        v = int(value)
        ok = mallopt(param, v)
        if not ok and param == _M_MMAP_THRESHOLD:
            v = 32 << 20
            ok = mallopt(param, v)
        if ok:
            applied[key] = v
    return applied
