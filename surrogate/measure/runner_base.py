"""The runner interface every backend's runner implements, and what they share.

    runner = make_runner("cpu-litert")               # surrogate.measure.profiles
    h = runner.load(module, (1, 40, 28, 28))        # NCHW shape; exports via the cache
    times_ms = runner.time(h, warmup=10, runs=30)    # per-run latencies, the profile's clock
    both = runner.time_clocks(h, warmup=10, runs=30) # RunTimes: wall_ms and cpu_ms per run
    y = runner.run(h, x_nchw)                        # output in torch layout (checks)

Two clocks per run: ``time.perf_counter_ns`` (wall) and ``time.thread_time_ns``
(CPU time of the calling thread). With one thread, XNNPACK, ONNX Runtime's
sequential executor and eager torch compute on the calling thread, so CPU time
is the latency on a quiet core and barely moves when other processes share the
core (wall time doubles); the profile's ``clock`` says which one is latency.

Runners are made by their runtime's backend (:mod:`.backends`), which also says
how a module becomes the model file a :class:`FileRunner` loads (``export_options``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from .clocks import RunTimes, as_run_times
from .export import ExportCache, normalize_shape
from .pinning import allowed_cpus, free_cpus, pin_process, resolve_core

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["RunnerProfile", "LoadedModel", "Runner", "FileRunner"]


class RunnerProfile(Protocol):
    """What runners and backends read of a :class:`~.profiles.DeviceProfile`.

    (Profiles ask the backends about their runtime, and the backends own the
    runners, so these name the profile by this interface instead of importing it.)
    """

    @property
    def name(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def converter(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def precision(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def layout(self) -> str: ...
    @property
    def pin_core(self) -> int | None: ...
    @property
    def warmup(self) -> int: ...
    @property
    def runs(self) -> int: ...
    @property
    def clock(self) -> str: ...
    @property
    def cuda_graphs(self) -> bool: ...


@dataclass
class LoadedModel:
    """A model ready to time. ``input_shape`` is NCHW; ``feed_shape`` is what the runtime gets."""

    name: str
    input_shape: tuple[int, ...]
    feed_shape: tuple[int, ...]
    obj: Any
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    feed: Any = None


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    """Move the channel axis last (rank >= 3)."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim >= 3 else a


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    """Move the channel axis back to position 1 (rank >= 3)."""
    return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if a.ndim >= 3 else a


def random_input(shape: Sequence[int], seed: int) -> np.ndarray:
    """Standard-normal float32 input of ``shape`` (seeded)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def time_callable(fn: Callable[[], Any], warmup: int, runs: int) -> RunTimes:
    """Call ``fn`` ``warmup`` times, then time ``runs`` calls on both clocks.

    The thread-CPU reads bracket the wall reads, so wall excludes the
    (syscall) cost of ``thread_time_ns`` and CPU time includes only the vDSO
    ``perf_counter_ns`` reads, tens of ns.
    """
    for _ in range(warmup):
        fn()
    wall = np.empty(runs, dtype=np.int64)
    cpu = np.empty(runs, dtype=np.int64)
    wclock, cclock = time.perf_counter_ns, time.thread_time_ns
    for i in range(runs):
        c0 = cclock()
        t0 = wclock()
        fn()
        t1 = wclock()
        c1 = cclock()
        wall[i] = t1 - t0
        cpu[i] = c1 - c0
    return RunTimes(wall / 1e6, cpu / 1e6)


class Runner:
    """Common interface; subclasses implement ``_load``, ``_time`` and ``_run``.

    ``export_options`` (from the backend) are the :meth:`ExportCache.export` options
    of the model file the runtime loads; None for runtimes that run the module itself.
    """

    def __init__(self, profile: RunnerProfile, cache: ExportCache | None = None, seed: int = 0, *,
                 export_options: Mapping[str, Any] | None = None) -> None:
        self.profile = profile
        self.cache = cache if cache is not None else ExportCache()
        self.seed = seed
        self.export_options = dict(export_options) if export_options is not None else None
        self.pinned_core: int | None = None
        self.cpus_before_pin: list[int] = allowed_cpus()

    # public API ---------------------------------------------------------
    def load(self, module: "torch.nn.Module", input_shape: Sequence[int], name: str | None = None) -> LoadedModel:
        """Prepare ``module`` for timing at NCHW ``input_shape`` (exporting if needed)."""
        shape = normalize_shape(input_shape, self.profile.batch)
        return self._load(module, shape, name or type(module).__name__)

    def time(self, handle: LoadedModel, warmup: int | None = None, runs: int | None = None) -> np.ndarray:
        """Per-run latencies in ms under the profile's clock, after ``warmup`` untimed runs."""
        return self.time_clocks(handle, warmup, runs).clock(self.profile.clock)

    def time_clocks(self, handle: LoadedModel, warmup: int | None = None,
                    runs: int | None = None) -> RunTimes:
        """Wall and thread-CPU ms of each run after ``warmup`` untimed runs (profile defaults)."""
        warmup = self.profile.warmup if warmup is None else int(warmup)
        runs = self.profile.runs if runs is None else int(runs)
        if warmup < 0 or runs < 1:
            raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
        self.ensure_pinned()
        return as_run_times(self._time(handle, warmup, runs))

    def timer(self, handle: LoadedModel) -> Callable[[int, int], RunTimes]:
        """``(warmup, runs) -> RunTimes`` closure, the item type of ``timing.measure``."""
        return lambda warmup, runs: self.time_clocks(handle, warmup, runs)

    def run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        """Output for NCHW input ``x``, in torch's layout (for correctness checks)."""
        x = np.asarray(x, dtype=np.float32)
        if tuple(x.shape) != handle.input_shape:
            raise ValueError(f"input has shape {x.shape}, model {handle.name} expects {handle.input_shape}")
        return self._run(handle, x)

    def ensure_pinned(self) -> int | None:
        """Pin the process per the profile (once); returns the core or None."""
        if self.profile.pin_core is None or self.pinned_core is not None:
            return self.pinned_core
        core = resolve_core(self.profile.pin_core)
        pin_process(core)
        self.pinned_core = core
        return core

    def unpin(self) -> None:
        """Give the process back the cores it had before :meth:`ensure_pinned`."""
        if self.pinned_core is not None:
            pin_process(self.cpus_before_pin)
            self.pinned_core = None

    def free_cpus(self) -> list[int]:
        """Cores for converters/other work: the ones allowed before pinning, minus the timing
        core (:func:`.pinning.free_cpus`)."""
        return free_cpus(self.cpus_before_pin, self.profile.pin_core, self.pinned_core)

    def describe(self) -> dict[str, Any]:
        """Runner settings for provenance."""
        return {"runner": type(self).__name__, "pinned_core": self.pinned_core}

    # to implement -------------------------------------------------------
    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        raise NotImplementedError

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        raise NotImplementedError

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class FileRunner(Runner):
    """A runner of model files: ``load`` exports the module (cached), then :meth:`load_file`."""

    def load_file(self, path: str | Path, input_shape: Sequence[int], name: str | None = None) -> LoadedModel:
        """Load an existing model file whose input is ``input_shape`` (NCHW description)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no model file at {p}")
        return self._open(p, normalize_shape(input_shape, self.profile.batch), name or p.stem)

    def _open(self, path: Path, shape: tuple[int, ...], name: str) -> LoadedModel:
        raise NotImplementedError

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        if self.export_options is None:
            raise ValueError(f"profile {self.profile.name!r}: {type(self).__name__} needs a model "
                             f"format; make runners with make_runner")
        res = self.cache.export(module, shape, **self.export_options)
        h = self.load_file(res.path, shape, name)
        h.info.update(cache_key=res.key, export_cached=res.cached, export_s=res.seconds)
        return h
