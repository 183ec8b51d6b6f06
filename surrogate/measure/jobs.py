"""Measurement jobs: per-operator tables and end-to-end timings for a space.

Both jobs work in chunks. Conversion runs ahead in one worker process pinned to
another core than the timing (the content-addressed cache means nothing is
converted twice, across runs too); a chunk is timed with interleaved, shuffled
rounds plus a fixed reference operator (:func:`timing.measure`) and its rows are
appended to the table, fsynced, before the next chunk. Killing the job at any
moment loses at most the chunk in flight; rerunning skips every row on disk.

Every row keeps both clocks (``wall_ms``, ``cpu_ms``); ``median_ms`` is the latency
under the profile's clock (``MeasureSettings.clock`` overrides it) and the
settings' estimator, and a table holds one clock and one estimator only.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from space.arch import Arch, LayerConfig
from space.blockstring import format_arch
from space.counting import count

from ..tables import (CLOCK_DIVERGENCE, LEGACY_CLOCK, LEGACY_ESTIMATOR, Table, clock_diverged,
                      file_sha256, op_row_key, provenance_path, write_json_atomic)
from .profiles import DeviceProfile, get_profile
from .timing import DriftGuard, MeasureSettings

#: the reference operator re-timed in every chunk to track drift across a table
REFERENCE_OP = LayerConfig(op="mbconv", h=28, w=28, in_ch=40, out_ch=40, kernel=3, stride=1,
                           expand=6, se=0.0, skip="identity", groups=1, act="relu")

DEFAULT_TABLES_DIR = Path(__file__).resolve().parents[2] / "data" / "latency_tables"


def tables_dir(path: str | os.PathLike | None = None) -> Path:
    """Explicit path, else ``$MNAS_TABLES_DIR``, else the repository's ``data/latency_tables``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("MNAS_TABLES_DIR")
    return Path(env) if env else DEFAULT_TABLES_DIR


def now_iso() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class JobSummary:
    """Outcome of a measurement job: rows measured, skipped, time, throughput."""
    table: str
    measured: int
    skipped: int
    total: int
    wall_s: float
    convert_s: float
    per_minute: float
    interrupted: bool = False
    convert_only: bool = False
    not_converted: int = 0  # rows left untimed by ``cached_only``

    def as_dict(self) -> dict:
        """The summary as a JSON-ready dict."""
        return dict(self.__dict__)


# -- conversion ahead of timing ------------------------------------------------------
def _convert_worker_init(cpus: list[int] | None) -> None:  # runs in the worker
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except (AttributeError, OSError):
            pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _convert_one(args) -> tuple[int, float]:  # runs in the worker (or inline)
    i, kind, payload, fmt, nhwc, cache_dir, converter = args
    from .export import ExportCache

    module, shape = _module_for(kind, payload)
    res = ExportCache(cache_dir).export(module, shape, fmt, nhwc=nhwc, converter=converter)
    return i, (0.0 if res.cached else res.seconds)


def _is_cached(cache, profile: DeviceProfile, kind: str, payload) -> bool:
    """Whether the model of one row is already in the export cache (always, for eager runtimes)."""
    if profile.exporter not in ("tflite", "onnx"):
        return True
    module, shape = _module_for(kind, payload)
    key = cache.key(module, shape, profile.exporter, nhwc=profile.layout == "NHWC",
                    converter=profile.converter)
    return cache.path_for(key, profile.exporter).is_file()


def _module_for(kind: str, payload):
    from space.build import build_model, build_op, input_shape, op_input_shape

    if kind == "op":
        return build_op(payload), op_input_shape(payload)
    return build_model(payload), input_shape(payload)


class _Prefetcher:
    """Converts jobs in order in a pinned worker process; ``wait(i)`` blocks until job i is done.

    With the direct .tflite writer (milliseconds a model) there is no worker:
    ``wait(i)`` writes job i in this process, so nothing runs beside the timing.
    """

    def __init__(self, jobs: list[tuple[str, object]], profile: DeviceProfile, cache_dir: Path,
                 cpus: list[int] | None, processes: int = 1, convert_all: bool = False):
        self.done = threading.Event()
        self.finished: set[int] = set()
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.convert_s = 0.0
        self.jobs = jobs
        fmt = profile.exporter
        self.active = fmt in ("tflite", "onnx") and bool(jobs)
        if not self.active:
            return
        nhwc = profile.layout == "NHWC"
        payload = [(i, k, p, fmt, nhwc, str(cache_dir), profile.converter) for i, (k, p) in enumerate(jobs)]
        self.inline = fmt == "tflite" and profile.converter == "direct"
        if self.inline:
            self.payload = payload
            self.convert_all = convert_all
            return
        import multiprocessing as mp

        self.pool = mp.get_context("spawn").Pool(max(1, processes), initializer=_convert_worker_init,
                                                 initargs=(cpus,))
        self.thread = threading.Thread(target=self._run, args=(payload,), daemon=True)
        self.thread.start()

    def _run(self, payload):
        try:
            for i, secs in self.pool.imap(_convert_one, payload):
                with self.cond:
                    self.finished.add(i)
                    self.convert_s += secs
                    self.cond.notify_all()
        except BaseException as exc:  # surfaced by wait()
            with self.cond:
                self.error = exc
                self.cond.notify_all()

    def wait(self, i: int) -> None:
        if not self.active:
            return
        if self.inline:  # the runner's load writes it (cached), in this process
            if i not in self.finished and self.convert_all:
                self.convert_s += _convert_one(self.payload[i])[1]
            self.finished.add(i)
            return
        with self.cond:
            while i not in self.finished and self.error is None:
                self.cond.wait(1.0)
            if self.error is not None and i not in self.finished:
                raise RuntimeError(f"conversion failed: {self.error}") from self.error

    def close(self) -> None:
        if self.active and not self.inline:
            self.pool.terminate()
            self.pool.join()


def _progress_bar(enabled: bool, total: int, initial: int, unit: str, desc: str):
    """A tqdm bar with ETA on stderr, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=sys.stderr,
                dynamic_ncols=True)


def _close(pre: _Prefetcher, bar) -> None:
    pre.close()
    if bar is not None:
        bar.close()


# -- provenance ----------------------------------------------------------------------
def _provenance(table: Table, profile: DeviceProfile, space: str, kind: str,
                settings: MeasureSettings, runner_info: dict, extra: dict) -> dict:
    p = provenance_path(table.path)
    prev = json.loads(p.read_text()) if p.is_file() else {}
    host = profile.host_info()
    sessions = prev.get("sessions", [])
    return {**prev, "kind": kind, "profile": profile.as_dict(), "space": space, "host": host,
            "settings": settings.as_dict(), "runner": runner_info, "clock": settings.clock,
            "estimator": settings.estimator, "clock_divergence_threshold": CLOCK_DIVERGENCE,
            "reference_op": REFERENCE_OP.key(), "created": prev.get("created", now_iso()),
            "sessions": sessions, **extra}


def _finish_provenance(table: Table, prov: dict, session: dict) -> None:
    rows = table.read()
    prov["sessions"] = prov.get("sessions", []) + [session]
    prov["updated"] = now_iso()
    prov["rows"] = len(rows)
    prov["table_sha256"] = file_sha256(table.path) if table.path.exists() else None
    prov["wall_s_total"] = round(sum(s.get("wall_s", 0.0) for s in prov["sessions"]), 1)
    refs = [r["ref_ms"] for r in rows if np.isfinite(r.get("ref_ms", np.nan))]
    if refs:
        prov["reference_ms"] = {"clock": prov.get("clock", LEGACY_CLOCK),
                                "estimator": prov.get("estimator", LEGACY_ESTIMATOR),
                                "median": float(np.median(refs)), "min": float(np.min(refs)),
                                "max": float(np.max(refs)),
                                "drift_max_over_min": float(np.max(refs) / np.min(refs))}
    write_json_atomic(provenance_path(table.path), prov)


def reference_baseline(table: Table) -> float | None:
    """Median reference-operator time over the rows a table already has (None: none)."""
    if not table.path.exists():
        return None
    refs = [r["ref_ms"] for r in table.read() if np.isfinite(r.get("ref_ms", np.nan))]
    return float(np.median(refs)) if refs else None


def profile_reference_baseline(directory: str | os.PathLike, clock: str | None = None,
                               estimator: str | None = None) -> float | None:
    """The host's usual reference-operator time over every table of one profile folder.

    Row-weighted median of the per-table reference medians recorded in the
    provenance files (same reference operator only; with ``clock``/``estimator``
    only tables timed so, a provenance without them counting as wall/median). A
    new table's first chunk may fall in a slow episode of the host; judging drift
    against this pooled figure keeps such a chunk from becoming the table's
    yardstick. None: no table yet.
    """
    meds, weights = [], []
    for prov in sorted(Path(directory).glob("*.provenance.json")):
        try:
            p = json.loads(prov.read_text())
            med = float(p["reference_ms"]["median"])
            rows = int(p.get("rows") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if clock is not None and p.get("clock", LEGACY_CLOCK) != clock:
            continue
        if estimator is not None and p.get("estimator", LEGACY_ESTIMATOR) != estimator:
            continue
        if p.get("reference_op") == REFERENCE_OP.key() and med > 0 and rows > 0:
            meds.append(med)
            weights.append(rows)
    if not meds:
        return None
    order = np.argsort(meds)
    cum = np.cumsum(np.asarray(weights, dtype=float)[order])
    return float(np.asarray(meds)[order][np.searchsorted(cum, cum[-1] / 2)])


# -- the generic chunked loop ---------------------------------------------------------
def _run_chunks(*, table: Table, items: list[tuple[str, str, object, dict]],
                profile: DeviceProfile, settings: MeasureSettings, chunk: int,
                cache_dir: Path | None, progress: bool, kind: str, space: str,
                extra_prov: dict | None = None, convert_all_cores: bool = False,
                on_chunk: Callable[[int], None] | None = None,
                convert_only: bool = False, cached_only: bool = False) -> JobSummary:
    """items: (row_key, build_kind, payload, row_identity_columns)."""
    from .export import ExportCache
    from .runners import make_runner

    t0 = time.perf_counter()
    done = table.done_keys()
    if not convert_only:
        table.check_timing(settings.clock, settings.estimator)
    todo = [it for it in items if it[0] not in done]
    total = len(items)
    cache = ExportCache(cache_dir)
    not_converted = 0
    if cached_only and not convert_only:  # time what is converted; leave the rest for later
        kept = [it for it in todo if _is_cached(cache, profile, it[1], it[2])]
        not_converted = len(todo) - len(kept)
        todo = kept
    if not todo:  # complete: no converter, no pinning, provenance untouched
        return JobSummary(str(table.path), 0, total - not_converted, total, time.perf_counter() - t0,
                          0.0, 0.0, False, convert_only=convert_only, not_converted=not_converted)
    if convert_only:
        return _convert_only(todo, total, profile, cache, progress, t0, table)
    runner = make_runner(profile, cache)
    # the converter's cores are decided before this process pins itself to the timing
    # core (a worker spawned after pinning would inherit it and share the timing core)
    free = runner.free_cpus() or None
    n_proc = 1
    if convert_all_cores:  # conversion finishes before any timing (one chunk): use every core
        free = sorted(runner.cpus_before_pin)
        n_proc = len(free)
    prov = _provenance(table, profile, space, kind, settings, runner.describe(), extra_prov or {})
    session = {"started": now_iso(), "measured": 0,
               "skipped_existing": total - len(todo) - not_converted, "clock": settings.clock,
               "estimator": settings.estimator, "clock_divergence_threshold": CLOCK_DIVERGENCE,
               "converter": profile.converter if profile.exporter == "tflite" else profile.exporter,
               "host": prov["host"].get("host"), "reference_chunks": []}
    if cached_only:
        session["skipped_not_converted"] = not_converted
    bar = _progress_bar(progress, total, total - len(todo), kind[:-1] if kind.endswith("s") else kind,
                        f"{profile.name} {table.path.name}")
    jobs = [(("op", REFERENCE_OP))] + [(b, p) for _, b, p, _ in todo]
    pre = _Prefetcher(jobs, profile, cache.dir, free, processes=n_proc)
    runner.ensure_pinned()
    session["converter_cpus"] = free
    session["timing_cpu"] = runner.pinned_core
    measured = 0
    interrupted = False
    baseline = (profile_reference_baseline(table.path.parent, settings.clock, settings.estimator)
                or reference_baseline(table))
    guard = DriftGuard(settings, baseline)
    session["drift_baseline_ms"] = baseline
    try:
        if not free and runner.pinned_core is not None:
            # one core: the converter would share the timing core, so convert everything first
            for i in range(len(jobs)):
                pre.wait(i)
        pre.wait(0)
        ref_mod, ref_shape = _module_for("op", REFERENCE_OP)
        ref_fn = runner.timer(runner.load(ref_mod, ref_shape, name="reference"))
        for c0 in range(0, len(todo), chunk):
            part = todo[c0: c0 + chunk]
            fns = {}
            for j, (key, b, p, _) in enumerate(part):
                pre.wait(1 + c0 + j)
                mod, shape = _module_for(b, p)
                fns[key] = runner.timer(runner.load(mod, shape, name=key[:60]))
            report = guard.measure_chunk(fns, ("__reference__", ref_fn), settings.seed + c0)
            ref_ms = float(np.median(report.reference_ms)) if report.reference_ms else float("nan")
            session["reference_chunks"].append(  # the reference on both clocks, per chunk
                {"first_row": c0, "ms": ref_ms,
                 "wall_ms": [round(v, 6) for v in report.reference_wall_ms],
                 "cpu_ms": [round(v, 6) for v in report.reference_cpu_ms]})
            stamp = now_iso()
            rows = []
            for key, _, _, ident in part:
                r = report.results[key]
                rows.append({**ident, "median_ms": r.median_ms, "wall_ms": r.wall_ms,
                             "cpu_ms": r.cpu_ms, "clock": r.clock, "estimator": r.estimator,
                             "clock_diverged": clock_diverged(r.wall_ms, r.cpu_ms),
                             "mean_ms": r.mean_ms,
                             "std_ms": r.std_ms, "p10_ms": r.p10_ms, "p90_ms": r.p90_ms,
                             "iqr_ms": r.iqr_ms, "cv": r.cv, "rel_spread": r.rel_spread,
                             "n_runs": r.n_runs, "n_rounds": r.n_rounds,
                             "remeasured": r.remeasured, "ref_ms": ref_ms, "measured_at": stamp})
            table.append(rows)
            measured += len(rows)
            if bar is not None:
                bar.update(len(rows))
            if on_chunk is not None:
                on_chunk(measured)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _close(pre, bar)
        runner.unpin()  # the caller gets its cores back
        if pre.active and pre.inline:  # written by the runner's loads, in this process
            pre.convert_s += cache.convert_seconds
        wall = time.perf_counter() - t0
        session.update({"finished": now_iso(), "measured": measured, "wall_s": round(wall, 1),
                        "convert_s": round(pre.convert_s, 1), "interrupted": interrupted,
                        "per_minute": round(measured / wall * 60, 2) if wall > 0 else None,
                        "drift_guard": guard.as_dict()})
        if table.path.exists():
            _finish_provenance(table, prov, session)
    return JobSummary(str(table.path), measured, total - len(todo) - not_converted, total, wall,
                      pre.convert_s, measured / wall * 60 if wall > 0 else 0.0, interrupted,
                      not_converted=not_converted)


def _convert_only(todo: list, total: int, profile: DeviceProfile, cache, progress: bool,
                  t0: float, table: Table) -> JobSummary:
    """Convert the rows still to time on every allowed core, timing nothing.

    For a later timing run on a quiet machine: conversion dominates the cost of a
    table (about 1 s per layer with litert-torch), and with nothing being timed it may
    use all cores.
    """
    from .runners import allowed_cpus

    cpus = allowed_cpus()
    jobs = [("op", REFERENCE_OP)] + [(b, p) for _, b, p, _ in todo]
    bar = _progress_bar(progress, len(jobs), 0, "model", f"{profile.name} converting")
    pre = _Prefetcher(jobs, profile, cache.dir, cpus, processes=len(cpus), convert_all=True)
    interrupted = False
    started = now_iso()
    try:
        for i in range(len(jobs)):
            pre.wait(i)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _close(pre, bar)
    wall = time.perf_counter() - t0
    # the conversion cost belongs to the table's wall time: record it beside the timing sessions
    prov_p = provenance_path(table.path)
    prov = json.loads(prov_p.read_text()) if prov_p.is_file() else {}
    prov["conversions"] = prov.get("conversions", []) + [{
        "started": started, "finished": now_iso(), "models": len(jobs), "wall_s": round(wall, 1),
        "convert_s": round(pre.convert_s, 1), "cpus": cpus, "interrupted": interrupted}]
    prov_p.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(prov_p, prov)
    return JobSummary(f"{len(jobs)} models in {cache.dir}", 0, total - len(todo), total, wall,
                      pre.convert_s, 0.0, interrupted, convert_only=True)


def resolve_clock(profile: DeviceProfile,
                  settings: MeasureSettings | None) -> tuple[DeviceProfile, MeasureSettings]:
    """The profile and settings of a job, agreeing on the latency clock.

    Settings default to the profile's warm-up/runs/rounds; ``settings.clock`` None
    takes the profile's clock, an explicit one replaces it in the profile (validated
    there: ``cpu`` only for local 1-thread CPU runtimes).
    """
    if settings is None:
        settings = MeasureSettings(warmup=profile.warmup, runs=profile.runs, rounds=profile.rounds)
    if settings.clock is not None and settings.clock != profile.clock:
        profile = dataclasses.replace(profile, clock=settings.clock)
    return profile, dataclasses.replace(settings, clock=profile.clock)


def measure_ops(profile: str | DeviceProfile, space: str, *, out_dir: str | os.PathLike | None = None,
                settings: MeasureSettings | None = None, chunk: int = 48,
                limit: int | None = None, cache_dir: str | os.PathLike | None = None,
                progress: bool = True, configs: Sequence[LayerConfig] | None = None,
                convert_only: bool = False, cached_only: bool = False) -> JobSummary:
    """Measure every distinct operator configuration of ``space`` (resumable).

    ``limit`` measures only the first N configurations (sorted by key);
    ``configs`` overrides the list (for tests and the op-level model's gaps);
    ``convert_only`` converts the rows still missing on every core and times nothing;
    ``cached_only`` times only the rows whose model is already converted (the rest
    stay for a later run), so nothing converts beside the timing.
    """
    from space.spaces import get_space

    prof = get_profile(profile) if isinstance(profile, str) else profile
    ok, why = prof.available()
    if not ok:
        raise ValueError(f"profile {prof.name!r} cannot run here: {why}")
    sp = get_space(space)
    ops = list(configs) if configs is not None else sp.operator_configs()
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        ops = ops[:limit]
    table = Table.ops(tables_dir(out_dir) / prof.name / f"{space}_ops.csv")
    items = [(lc.key(), "op", lc, op_row_key(lc)) for lc in ops]
    prof, settings = resolve_clock(prof, settings)
    return _run_chunks(table=table, items=items, profile=prof, settings=settings,
                       chunk=chunk, cache_dir=Path(cache_dir) if cache_dir else None,
                       progress=progress, kind="ops", space=space, convert_only=convert_only,
                       cached_only=cached_only)


def measure_models(profile: str | DeviceProfile, space: str, archs: Iterable[tuple[Arch, str]], *,
                   out_dir: str | os.PathLike | None = None,
                   settings: MeasureSettings | None = None, chunk: int = 16,
                   cache_dir: str | os.PathLike | None = None, progress: bool = True,
                   table_name: str | None = None, convert_all_cores: bool = False,
                   convert_only: bool = False, cached_only: bool = False) -> JobSummary:
    """Time whole networks end to end into ``<space>_models.csv`` (resumable).

    ``archs`` yields ``(arch, source)`` pairs; source says where the row came
    from (``random:seed=0``, ``reference:mnasnet-a1``, ``file:archs.txt``).
    ``convert_only`` converts the rows still missing on every core and times nothing;
    ``cached_only`` times only rows whose model is already converted.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    ok, why = prof.available()
    if not ok:
        raise ValueError(f"profile {prof.name!r} cannot run here: {why}")
    seen, items = set(), []
    for a, source in archs:
        s = format_arch(a)
        if s in seen:
            continue
        seen.add(s)
        c = count(a)
        items.append((s, "model", a, {"arch": s, "space": space, "source": source,
                                       "params": c.params, "madds": c.madds}))
    name = table_name or f"{space}_models.csv"
    table = Table.models(tables_dir(out_dir) / prof.name / name)
    prof, settings = resolve_clock(prof, settings)
    return _run_chunks(table=table, items=items, profile=prof, settings=settings,
                       chunk=chunk, cache_dir=Path(cache_dir) if cache_dir else None,
                       progress=progress, kind="models", space=space,
                       convert_all_cores=convert_all_cores and len(items) <= chunk,
                       convert_only=convert_only, cached_only=cached_only)
