"""One runner per runtime, all with the same interface.

    runner = make_runner(get_profile("cpu-litert"))
    h = runner.load(module, (1, 40, 28, 28))        # NCHW shape; exports via the cache
    times_ms = runner.time(h, warmup=10, runs=30)    # per-run latencies, the profile's clock
    both = runner.time_clocks(h, warmup=10, runs=30) # RunTimes: wall_ms and cpu_ms per run
    y = runner.run(h, x_nchw)                        # output in torch layout (checks)

Two clocks per run: ``time.perf_counter_ns`` (wall) and ``time.thread_time_ns``
(CPU time of the calling thread). With one thread, XNNPACK, ONNX Runtime's
sequential executor and eager torch compute on the calling thread, so CPU time
is the latency on a quiet core and barely moves when other processes share the
core (wall time doubles); the profile's ``clock`` says which one is latency.
CUDA and adb runners have no meaningful thread CPU time (NaN).

Pinning and the glibc allocator tuning live in :mod:`.pinning` (re-exported).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .export import ExportCache, export_for_profile, normalize_shape
from .pinning import allowed_cpus, pin_process, pinned, resolve_core, tune_glibc_malloc
from .profiles import DeviceProfile, get_profile, litert_interpreter_module
from .timing import RunTimes, as_run_times

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "LoadedModel",
    "Runner",
    "LiteRTRunner",
    "OrtRunner",
    "TorchRunner",
    "CudaTorchRunner",
    "make_runner",
    "allowed_cpus",
    "pin_process",
    "pinned",
    "resolve_core",
    "tune_glibc_malloc",
]

# ------------------------------------------------------------------ handles


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


def _nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim >= 3 else a


def _nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if a.ndim >= 3 else a


def _random_input(shape: Sequence[int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class Runner:
    """Common interface; subclasses implement ``_load``, ``_time`` and ``_run``."""

    def __init__(self, profile: DeviceProfile, cache: ExportCache | None = None, seed: int = 0) -> None:
        self.profile = profile
        self.cache = cache if cache is not None else ExportCache()
        self.seed = seed
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
        """Cores for converters/other work: the ones allowed before pinning, minus the timing core.

        Compute converter affinity from this, not from ``os.sched_getaffinity``
        after timing started (by then the whole process is pinned to the timing
        core, so a worker spawned later would share it). Empty on a 1-core box.
        """
        core = self.pinned_core
        if core is None and self.profile.pin_core is not None:
            core = self.cpus_before_pin[-1] if self.profile.pin_core == -1 else self.profile.pin_core
        return [c for c in self.cpus_before_pin if c != core]

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


def _time_callable(fn: Callable[[], Any], warmup: int, runs: int) -> RunTimes:
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


# ------------------------------------------------------------------- LiteRT


class LiteRTRunner(Runner):
    """LiteRT ``Interpreter(num_threads=1)``; XNNPACK is applied by default (recorded)."""

    def _interpreter_cls(self) -> Any:
        mod, _ = litert_interpreter_module()
        if not mod:
            raise ImportError("no LiteRT interpreter installed: pip install ai-edge-litert==2.3.0")
        return __import__(mod, fromlist=["Interpreter"]).Interpreter

    def load_file(self, path: str | os.PathLike[str], input_shape: Sequence[int], name: str | None = None) -> LoadedModel:
        """Load an existing .tflite whose input is ``input_shape`` (NCHW description)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no .tflite model at {p}")
        shape = normalize_shape(input_shape, self.profile.batch)
        interp = self._interpreter_cls()(model_path=str(p), num_threads=self.profile.threads)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        feed_shape = tuple(int(d) for d in inp["shape"])
        nhwc = self.profile.layout == "NHWC" and len(shape) >= 3
        expected = (shape[0], *shape[2:], shape[1]) if nhwc else shape
        if feed_shape != expected:
            raise ValueError(f"{p}: model input shape {feed_shape} does not match {expected} for {shape}")
        try:
            ops = [d["op_name"] for d in interp._get_ops_details()]  # noqa: SLF001 - only way to list ops
        except Exception:  # noqa: BLE001
            ops = []
        feed = _nchw_to_nhwc(_random_input(shape, self.seed)) if nhwc else _random_input(shape, self.seed)
        interp.set_tensor(inp["index"], feed)
        info = {
            "xnnpack_delegate": "DELEGATE" in ops,
            "ops": [o for o in ops if o != "DELEGATE"],
            "nhwc": nhwc,
        }
        return LoadedModel(name or p.stem, shape, feed_shape, interp, p, info, feed)

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        res = export_for_profile(self.profile, module, shape, self.cache)
        if res is None:
            raise ValueError(f"profile {self.profile.name!r} has no .tflite exporter")
        h = self.load_file(res.path, shape, name)
        h.info.update(cache_key=res.key, export_cached=res.cached, export_s=res.seconds)
        return h

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        return _time_callable(handle.obj.invoke, warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        interp = handle.obj
        feed = _nchw_to_nhwc(x) if handle.info.get("nhwc") else x
        interp.set_tensor(interp.get_input_details()[0]["index"], feed)
        interp.invoke()
        out = interp.get_tensor(interp.get_output_details()[0]["index"]).copy()
        interp.set_tensor(interp.get_input_details()[0]["index"], handle.feed)  # restore timing input
        return _nhwc_to_nchw(out) if handle.info.get("nhwc") else out


# --------------------------------------------------------------------- ORT


class OrtRunner(Runner):
    """ONNX Runtime CPU EP, 1 intra-op + 1 inter-op thread, sequential, ORT_ENABLE_ALL."""

    def load_file(self, path: str | os.PathLike[str], input_shape: Sequence[int], name: str | None = None) -> LoadedModel:
        """Load an existing .onnx with NCHW ``input_shape``."""
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no .onnx model at {p}")
        shape = normalize_shape(input_shape, self.profile.batch)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.profile.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(p), sess_options=so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        feed = _random_input(shape, self.seed)
        info = {"providers": sess.get_providers(), "input_name": inp.name}
        return LoadedModel(name or p.stem, shape, shape, sess, p, info, {inp.name: feed})

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        res = export_for_profile(self.profile, module, shape, self.cache)
        if res is None:
            raise ValueError(f"profile {self.profile.name!r} has no .onnx exporter")
        h = self.load_file(res.path, shape, name)
        h.info.update(cache_key=res.key, export_cached=res.cached, export_s=res.seconds)
        return h

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        sess, feed = handle.obj, handle.feed
        return _time_callable(lambda: sess.run(None, feed), warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        return handle.obj.run(None, {handle.info["input_name"]: x})[0]


# ------------------------------------------------------------------- torch


class TorchRunner(Runner):
    """Eager PyTorch on CPU: set_num_threads, eval, inference_mode, tuned malloc."""

    def __init__(self, profile: DeviceProfile, cache: ExportCache | None = None, seed: int = 0,
                 tune_malloc: bool = True) -> None:
        super().__init__(profile, cache, seed)
        self.malloc = tune_glibc_malloc() if tune_malloc else None

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        import torch

        torch.set_num_threads(self.profile.threads)
        module = module.eval()
        x = torch.from_numpy(_random_input(shape, self.seed))
        return LoadedModel(name, shape, shape, module, None, {"num_threads": torch.get_num_threads()}, x)

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        import torch

        m, x = handle.obj, handle.feed
        with torch.inference_mode():
            return _time_callable(lambda: m(x), warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return handle.obj(torch.from_numpy(x)).numpy()

    def describe(self) -> dict[str, Any]:
        """Runner settings for the provenance, with the allocator used."""
        return {**super().describe(), "malloc": self.malloc}


class CudaTorchRunner(Runner):
    """Eager PyTorch on CUDA, timed with CUDA events; optional CUDA-graph replay."""

    def __init__(self, profile: DeviceProfile, cache: ExportCache | None = None, seed: int = 0,
                 device: str = "cuda:0") -> None:
        super().__init__(profile, cache, seed)
        self.device = device

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("cuda-torch: torch sees no CUDA device")
        dtype = torch.float16 if self.profile.precision == "float16" else torch.float32
        module = module.eval().to(self.device, dtype)
        x = torch.from_numpy(_random_input(shape, self.seed)).to(self.device, dtype)
        info: dict[str, Any] = {"device": torch.cuda.get_device_name(self.device), "dtype": str(dtype)}
        graph = None
        if self.profile.cuda_graphs:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):  # warm up on a side stream before capture
                    module(x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                module(x)
            info["cuda_graph"] = True
        return LoadedModel(name, shape, shape, (module, graph), None, info, x)

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        import torch

        module, graph = handle.obj
        x = handle.feed
        fn = graph.replay if graph is not None else (lambda: module(x))
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            torch.cuda.synchronize()
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
            for s, e in zip(starts, ends):
                s.record()
                fn()
                e.record()
            torch.cuda.synchronize()
        wall = np.array([s.elapsed_time(e) for s, e in zip(starts, ends)], dtype=np.float64)
        return RunTimes.wall_only(wall)  # host thread CPU time says nothing about the GPU

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        import torch

        module, _ = handle.obj
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(self.device, handle.feed.dtype)
            return module(xt).float().cpu().numpy()


# ------------------------------------------------------------------ factory


def make_runner(
    profile: DeviceProfile | str,
    cache: ExportCache | None = None,
    *,
    seed: int = 0,
    serial: str | None = None,
    executor: Callable[[Sequence[str]], tuple[int, str]] | None = None,
    **kwargs: Any,
) -> Runner:
    """Runner for ``profile`` (a DeviceProfile or a registry name).

    ``serial`` and ``executor`` are for ``android-adb`` (see ``adb.AdbRunner``).
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    rt = profile.runtime
    if rt == "litert":
        return LiteRTRunner(profile, cache, seed, **kwargs)
    if rt == "onnxruntime":
        return OrtRunner(profile, cache, seed, **kwargs)
    if rt == "torch":
        return TorchRunner(profile, cache, seed, **kwargs)
    if rt == "torch-cuda":
        return CudaTorchRunner(profile, cache, seed, **kwargs)
    if rt == "adb-benchmark_model":
        from .adb import AdbRunner

        return AdbRunner(profile, cache, seed, serial=serial, executor=executor, **kwargs)
    raise ValueError(f"profile {profile.name!r}: no runner for runtime {rt!r}")
