"""``android-adb``: time .tflite models on a phone with TFLite's ``benchmark_model``.

The model is pushed to ``/data/local/tmp/mnas/`` and run as

    adb -s SERIAL shell taskset MASK /data/local/tmp/benchmark_model \
        --graph=... --num_threads=1 --warmup_runs=W --num_runs=R \
        --warmup_min_secs=0 --min_secs=0 --use_xnnpack=true

(``--min_secs=0``/``--warmup_min_secs=0`` make the run counts exact; by default
the tool keeps running for at least 1 s / 0.5 s). ``taskset`` pins the process
to one core (the highest-numbered by default, usually a big core). The serial
comes from the argument, ``MNAS_ADB_SERIAL`` or ``ANDROID_SERIAL``; without one
``-s`` is left out and adb uses the only attached device.

Nothing on the development machine has a phone: the command construction and the
output parser are tested against real benchmark_model output, the timing path
is not exercised on hardware here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .clocks import RunTimes
from .export import ExportCache
from .runner_base import FileRunner, LoadedModel, RunnerProfile

__all__ = [
    "ADB_SERIAL_ENV_VARS",
    "resolve_adb_serial",
    "adb_available",
    "REMOTE_DIR",
    "BENCHMARK_BINARY",
    "Executor",
    "RunStats",
    "BenchmarkOutput",
    "core_mask",
    "adb_prefix",
    "push_command",
    "benchmark_command",
    "parse_benchmark_output",
    "AdbRunner",
]

REMOTE_DIR = "/data/local/tmp/mnas"
BENCHMARK_BINARY = "/data/local/tmp/benchmark_model"
# Environment variables an ``android-adb`` run reads for the phone's serial
# (ours first, then adb's own).
ADB_SERIAL_ENV_VARS: tuple[str, ...] = ("MNAS_ADB_SERIAL", "ANDROID_SERIAL")

Executor = Callable[[Sequence[str]], tuple[int, str]]


def resolve_adb_serial(serial: str | None = None) -> str | None:
    """Serial from the argument, else MNAS_ADB_SERIAL, else ANDROID_SERIAL, else None."""
    if serial:
        return serial
    for var in ADB_SERIAL_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    return None


def adb_available(serial: str | None = None, executor: Executor | None = None) -> tuple[bool, str]:
    """Whether ``adb devices`` shows the phone to time on (``serial``, else the only one)."""
    if executor is None:
        if shutil.which("adb") is None:
            return False, "adb is not on PATH (no phone attached to this machine)"
        executor = _quick_executor
    try:
        rc, out = executor(["adb", "devices"])
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"adb devices failed: {exc}"
    if rc != 0:
        return False, f"adb devices exited {rc}: {out.strip()[:200]}"
    devices = [
        line.split()[0]
        for line in out.splitlines()[1:]
        if line.strip() and len(line.split()) >= 2 and line.split()[1] == "device"
    ]
    if not devices:
        return False, "adb sees no device in state 'device'"
    want = resolve_adb_serial(serial)
    if want is None:
        if len(devices) > 1:
            return False, (
                f"{len(devices)} devices attached ({', '.join(devices)}); choose one with "
                f"--serial or {ADB_SERIAL_ENV_VARS[0]}"
            )
        return True, f"device {devices[0]}"
    if want not in devices:
        return False, f"device {want!r} not attached (attached: {', '.join(devices)})"
    return True, f"device {want}"


def _quick_executor(cmd: Sequence[str]) -> tuple[int, str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def core_mask(cores: int | Sequence[int]) -> str:
    """Hex affinity mask for ``taskset`` (core 7 -> '80', cores 4-7 -> 'f0')."""
    cs = [cores] if isinstance(cores, int) else list(cores)
    if not cs or any(int(c) < 0 for c in cs):
        raise ValueError(f"cores must be non-negative core ids, got {cores!r}")
    mask = 0
    for c in cs:
        mask |= 1 << int(c)
    return format(mask, "x")


def adb_prefix(serial: str | None) -> list[str]:
    """``['adb', '-s', serial]`` or ``['adb']`` when no serial is set."""
    s = resolve_adb_serial(serial)
    return ["adb", "-s", s] if s else ["adb"]


def push_command(local: str, remote: str, serial: str | None = None) -> list[str]:
    """Command pushing ``local`` to ``remote`` on the phone."""
    return [*adb_prefix(serial), "push", str(local), remote]


def benchmark_command(
    remote_graph: str,
    *,
    serial: str | None = None,
    warmup: int = 20,
    runs: int = 50,
    threads: int = 1,
    cores: int | Sequence[int] | None = None,
    binary: str = BENCHMARK_BINARY,
    use_xnnpack: bool = True,
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """Command running ``benchmark_model`` on ``remote_graph`` (pinned when ``cores`` given)."""
    if warmup < 0 or runs < 1 or threads < 1:
        raise ValueError(f"need warmup >= 0, runs >= 1, threads >= 1; got {warmup}, {runs}, {threads}")
    cmd = [*adb_prefix(serial), "shell"]
    if cores is not None:
        cmd += ["taskset", core_mask(cores)]
    cmd += [
        binary,
        f"--graph={remote_graph}",
        f"--num_threads={threads}",
        f"--warmup_runs={warmup}",
        f"--num_runs={runs}",
        "--warmup_min_secs=0",
        "--min_secs=0",
        f"--use_xnnpack={'true' if use_xnnpack else 'false'}",
        *extra_flags,
    ]
    return cmd


# ------------------------------------------------------------------ parser

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COUNT_RE = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")*)")
_KV_RE = re.compile(r"(\w+)=(" + _NUM + r")")
_TIMINGS_RE = re.compile(
    r"Inference timings in us:\s*Init:\s*(" + _NUM + r"),\s*First inference:\s*(" + _NUM
    + r"),\s*Warmup \(avg\):\s*(" + _NUM + r"),\s*Inference \(avg\):\s*(" + _NUM + r")"
)
_OLD_TIMINGS_RE = re.compile(  # TF <= 1.13: "Average inference timings in us: Warmup: .., Init: .., no stats: .."
    r"Average inference timings in us:\s*Warmup:\s*(" + _NUM + r"),\s*Init:\s*(" + _NUM
    + r"),\s*(?:no stats|Inference):\s*(" + _NUM + r")"
)
_REPLACING_RE = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node")
_INIT_SESSION_RE = re.compile(r"Initialized session in (" + _NUM + r")ms")
_FILESIZE_RE = re.compile(r"input model file size \(MB\):\s*(" + _NUM + r")")


@dataclass(frozen=True)
class RunStats:
    """One ``count=... first=... curr=... min=... max=... avg=... std=...`` line (us)."""

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class BenchmarkOutput:
    """What ``benchmark_model`` printed, in its own units (us), plus ms helpers."""

    init_us: float | None
    first_inference_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float | None
    warmup: RunStats | None
    inference: RunStats | None
    delegate: str | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    init_session_ms: float | None = None
    model_size_mb: float | None = None
    all_runs: tuple[RunStats, ...] = field(default_factory=tuple)

    @property
    def latency_ms(self) -> float:
        """Median of the timed runs when printed (newer tools), else their mean."""
        if self.inference is not None and self.inference.median_us is not None:
            return self.inference.median_us / 1000.0
        if self.inference_avg_us is not None:
            return self.inference_avg_us / 1000.0
        if self.inference is not None and self.inference.avg_us is not None:
            return self.inference.avg_us / 1000.0
        raise ValueError("benchmark_model output has no inference average")

    @property
    def mean_ms(self) -> float | None:
        """Mean inference time in ms, if the output reported it."""
        v = self.inference_avg_us if self.inference_avg_us is not None else (
            self.inference.avg_us if self.inference else None)
        return None if v is None else v / 1000.0

    @property
    def std_ms(self) -> float | None:
        """Standard deviation of inference time in ms, if reported."""
        return None if self.inference is None or self.inference.std_us is None else self.inference.std_us / 1000.0

    def as_dict(self) -> dict[str, Any]:
        """All parsed fields plus ``latency_ms``, as a dict."""
        d = asdict(self)
        d["latency_ms"] = self.latency_ms
        return d


def _run_stats(m: re.Match[str]) -> RunStats:
    kv = {k: float(v) for k, v in _KV_RE.findall(m.group(2))}
    return RunStats(
        count=int(m.group(1)),
        first_us=kv.get("first"),
        curr_us=kv.get("curr"),
        min_us=kv.get("min"),
        max_us=kv.get("max"),
        avg_us=kv.get("avg"),
        std_us=kv.get("std"),
        p5_us=kv.get("p5"),
        median_us=kv.get("median"),
        p95_us=kv.get("p95"),
    )


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse ``benchmark_model`` stdout/stderr (with or without ``INFO:`` prefixes).

    The last ``count=`` line is the timed run; the one before it (if any) the
    warm-up. Raises ValueError when no timing is found (e.g. the tool failed).
    """
    runs = tuple(_run_stats(m) for m in _COUNT_RE.finditer(text))
    t = _TIMINGS_RE.search(text)
    init = first = wavg = iavg = None
    if t:
        init, first, wavg, iavg = (float(g) for g in t.groups())
    else:
        o = _OLD_TIMINGS_RE.search(text)
        if o:
            wavg, init, iavg = (float(g) for g in o.groups())
    if iavg is None and not runs:
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
        raise ValueError(f"benchmark_model output has no timing lines (last lines: {tail!r})")
    inference = runs[-1] if runs else None
    warmup = runs[-2] if len(runs) >= 2 else None
    rep = _REPLACING_RE.search(text)
    isess = _INIT_SESSION_RE.search(text)
    fsize = _FILESIZE_RE.search(text)
    return BenchmarkOutput(
        init_us=init,
        first_inference_us=first,
        warmup_avg_us=wavg,
        inference_avg_us=iavg,
        warmup=warmup,
        inference=inference,
        delegate=rep.group(3) if rep else None,
        delegated_nodes=int(rep.group(1)) if rep else None,
        total_nodes=int(rep.group(2)) if rep else None,
        init_session_ms=float(isess.group(1)) if isess else None,
        model_size_mb=float(fsize.group(1)) if fsize else None,
        all_runs=runs,
    )


# ------------------------------------------------------------------ runner


def _subprocess_executor(cmd: Sequence[str]) -> tuple[int, str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _parse_cpu_range(text: str) -> list[int]:
    cores: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            cores.extend(range(int(a), int(b) + 1))
        elif part.strip():
            cores.append(int(part))
    return cores


class AdbRunner(FileRunner):
    """Pushes .tflite files and runs ``benchmark_model`` through an injectable executor.

    ``time`` returns one value per call (the tool's median, or mean on older
    builds): benchmark_model prints aggregates, not per-run times. Rounds in
    ``timing.measure`` therefore each cost one adb invocation.
    """

    def __init__(
        self,
        profile: RunnerProfile,
        cache: ExportCache | None = None,
        seed: int = 0,
        *,
        export_options: Mapping[str, Any] | None = None,
        serial: str | None = None,
        executor: Executor | None = None,
        core: int = -1,
        binary: str = BENCHMARK_BINARY,
        remote_dir: str = REMOTE_DIR,
    ) -> None:
        super().__init__(profile, cache, seed, export_options=export_options)
        self.serial = resolve_adb_serial(serial)
        self.executor: Executor = executor or _subprocess_executor
        self.core = core
        self.binary = binary
        self.remote_dir = remote_dir
        self._pushed: set[str] = set()
        self._dir_made = False
        self.commands: list[list[str]] = []

    def _exec(self, cmd: list[str]) -> str:
        self.commands.append(cmd)
        rc, out = self.executor(cmd)
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {out.strip()[-400:]}")
        return out

    def ensure_pinned(self) -> int | None:
        """Resolve the phone core for ``taskset`` (the host is not pinned)."""
        if self.pinned_core is None:
            if self.core >= 0:
                self.pinned_core = self.core
            else:
                out = self._exec([*adb_prefix(self.serial), "shell", "cat", "/sys/devices/system/cpu/possible"])
                cores = _parse_cpu_range(out)
                if not cores:
                    raise RuntimeError(f"cannot read the phone's cores from {out!r}")
                self.pinned_core = cores[-1]
        return self.pinned_core

    def device_info(self) -> dict[str, str]:
        """Phone model, SoC and Android version (for provenance)."""
        info: dict[str, str] = {"serial": self.serial or ""}
        for key, prop in (("model", "ro.product.model"), ("soc", "ro.board.platform"),
                          ("android", "ro.build.version.release")):
            info[key] = self._exec([*adb_prefix(self.serial), "shell", "getprop", prop]).strip()
        return info

    def _open(self, path: Path, shape: tuple[int, ...], name: str) -> LoadedModel:
        """Push the .tflite to the phone (once); the handle is its remote path."""
        remote = f"{self.remote_dir}/{path.name}"
        if not self._dir_made:
            self._exec([*adb_prefix(self.serial), "shell", "mkdir", "-p", self.remote_dir])
            self._dir_made = True
        if remote not in self._pushed:
            self._exec(push_command(str(path), remote, self.serial))
            self._pushed.add(remote)
        feed = (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape
        return LoadedModel(name, shape, feed, remote, path, {"remote": remote})

    def _time(self, handle: LoadedModel, warmup: int, runs: int) -> RunTimes:
        cmd = benchmark_command(
            handle.obj, serial=self.serial, warmup=warmup, runs=runs,
            threads=self.profile.threads, cores=self.pinned_core, binary=self.binary,
        )
        parsed = parse_benchmark_output(self._exec(cmd))
        handle.info["last_benchmark"] = parsed.as_dict()
        # wall time on the phone; no thread CPU time comes back from benchmark_model
        return RunTimes.wall_only(np.array([parsed.latency_ms], dtype=np.float64))

    def _run(self, handle: LoadedModel, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError("android-adb only times models; check outputs with cpu-litert")
