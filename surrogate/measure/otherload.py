"""How busy the rest of the machine is while something is timed (Linux ``/proc/stat``).

Re-exported by :mod:`.timing`; imports nothing from the package.
"""
from __future__ import annotations

import os
import time

__all__ = ["OtherLoad"]


class OtherLoad:
    """CPU used by everything except this process, in cores (Linux /proc/stat).

    On a shared machine this is the first thing to check when timings look
    off: ``start()`` then ``stop()`` gives the mean number of cores other
    processes (our own conversion workers included) kept busy in between.
    """

    def __init__(self) -> None:
        self._t = self._busy = self._mine = None

    @staticmethod
    def _total_busy_s() -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                v = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        """Start counting CPU time spent by other processes."""
        self._t, self._busy = time.perf_counter(), self._total_busy_s()
        t = os.times()
        self._mine = t.user + t.system

    def stop(self) -> float | None:
        """Share of a core that other processes used since ``start`` (None if unknown)."""
        busy = self._total_busy_s()
        if busy is None or self._busy is None or self._t is None or self._mine is None:
            return None
        t = os.times()
        dt = time.perf_counter() - self._t
        other = (busy - self._busy) - (t.user + t.system - self._mine)
        return max(0.0, other) / dt if dt > 0 else None
