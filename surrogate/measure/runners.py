"""The runners of this host's runtimes: LiteRT, ONNX Runtime, eager torch on CPU and CUDA.

Each is the ``runner`` of one backend (:mod:`.backends`); the interface and the
shared parts are in :mod:`.runner_base`. CUDA has no meaningful thread CPU time (NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .clocks import RunTimes
from .export import ExportCache
from .installed import litert_interpreter_module
from .pinning import tune_glibc_malloc
from .runner_base import (FileRunner, LoadedModel, Runner, RunnerProfile, nchw_to_nhwc, nhwc_to_nchw,
                          random_input, time_callable)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["LiteRTRunner", "OrtRunner", "TorchRunner", "CudaTorchRunner"]


# ------------------------------------------------------------------- LiteRT


class LiteRTRunner(FileRunner):
    """LiteRT ``Interpreter(num_threads=1)``; XNNPACK is applied by default (recorded)."""

    def _interpreter_cls(self) -> Any:
        mod, _ = litert_interpreter_module()
        if not mod:
            raise ImportError("no LiteRT interpreter installed: pip install ai-edge-litert==2.3.0")
        return __import__(mod, fromlist=["Interpreter"]).Interpreter

    def _open(self, p: Path, shape: tuple[int, ...], name: str) -> LoadedModel:
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
        feed = nchw_to_nhwc(random_input(shape, self.seed)) if nhwc else random_input(shape, self.seed)
        interp.set_tensor(inp["index"], feed)
        info = {
            "xnnpack_delegate": "DELEGATE" in ops,
            "ops": [o for o in ops if o != "DELEGATE"],
            "nhwc": nhwc,
        }
        return LoadedModel(name, shape, feed_shape, interp, p, info, feed)

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        return time_callable(handle.obj.invoke, warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        interp = handle.obj
        feed = nchw_to_nhwc(x) if handle.info.get("nhwc") else x
        interp.set_tensor(interp.get_input_details()[0]["index"], feed)
        interp.invoke()
        out = interp.get_tensor(interp.get_output_details()[0]["index"]).copy()
        interp.set_tensor(interp.get_input_details()[0]["index"], handle.feed)  # restore timing input
        return nhwc_to_nchw(out) if handle.info.get("nhwc") else out


# --------------------------------------------------------------------- ORT


class OrtRunner(FileRunner):
    """ONNX Runtime CPU EP, 1 intra-op + 1 inter-op thread, sequential, ORT_ENABLE_ALL."""

    def _open(self, p: Path, shape: tuple[int, ...], name: str) -> LoadedModel:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.profile.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(str(p), sess_options=so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        feed = random_input(shape, self.seed)
        info = {"providers": sess.get_providers(), "input_name": inp.name}
        return LoadedModel(name, shape, shape, sess, p, info, {inp.name: feed})

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        sess, feed = handle.obj, handle.feed
        return time_callable(lambda: sess.run(None, feed), warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        return handle.obj.run(None, {handle.info["input_name"]: x})[0]


# ------------------------------------------------------------------- torch


class TorchRunner(Runner):
    """Eager PyTorch on CPU: set_num_threads, eval, inference_mode, tuned malloc."""

    def __init__(self, profile: RunnerProfile, cache: ExportCache | None = None, seed: int = 0, *,
                 export_options: Mapping[str, Any] | None = None, tune_malloc: bool = True) -> None:
        super().__init__(profile, cache, seed, export_options=export_options)
        self.malloc = tune_glibc_malloc() if tune_malloc else None

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        import torch

        torch.set_num_threads(self.profile.threads)
        module = module.eval()
        x = torch.from_numpy(random_input(shape, self.seed))
        return LoadedModel(name, shape, shape, module, None, {"num_threads": torch.get_num_threads()}, x)

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        import torch

        m, x = handle.obj, handle.feed
        with torch.inference_mode():
            return time_callable(lambda: m(x), warmup, runs)

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return handle.obj(torch.from_numpy(x)).numpy()

    def describe(self) -> dict[str, Any]:
        """Runner settings for the provenance, with the allocator used."""
        return {**super().describe(), "malloc": self.malloc}


class CudaTorchRunner(Runner):
    """Eager PyTorch on CUDA, timed with CUDA events; optional CUDA-graph replay."""

    def __init__(self, profile: RunnerProfile, cache: ExportCache | None = None, seed: int = 0, *,
                 export_options: Mapping[str, Any] | None = None, device: str = "cuda:0") -> None:
        super().__init__(profile, cache, seed, export_options=export_options)
        self.device = device

    def _load(self, module: "torch.nn.Module", shape: tuple[int, ...], name: str) -> LoadedModel:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("cuda-torch: torch sees no CUDA device")
        dtype = torch.float16 if self.profile.precision == "float16" else torch.float32
        module = module.eval().to(self.device, dtype)
        x = torch.from_numpy(random_input(shape, self.seed)).to(self.device, dtype)
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
