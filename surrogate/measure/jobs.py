"""Measurement jobs: per-operator tables and end-to-end timings for a space.

Both jobs work in chunks. Conversion runs ahead in one worker process pinned to
another core than the timing (:class:`.export.ConversionPool`; with the direct
.tflite writer, in this process; the content-addressed cache means nothing is
converted twice, across runs too); a chunk is timed with interleaved, shuffled
rounds plus a fixed reference operator (:func:`timing.measure`) and its rows are
appended to the table, fsynced, before the next chunk. Killing the job at any
moment loses at most the chunk in flight; rerunning skips every row on disk. One
process writes a table at a time: the job holds the table's lock
(:mod:`surrogate.tablelock`), and a second writer is refused at once.

Every row keeps both clocks (``wall_ms``, ``cpu_ms``); ``median_ms`` is the latency
under the profile's clock (``MeasureSettings.clock`` overrides it) and the
settings' estimator, and a table holds one clock and one estimator only. With a
reference-paired estimator (``min+ref``) the ratios to the reference are scaled by
one base per table (``reference_base_ms`` in its provenance), shared by the
tables of the profile folder so that operator and network tables agree.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from space.arch import Arch, LayerConfig
from space.blockstring import format_arch
from space.counting import count

from ..paths import named_table_path, plain_name
from ..tablelock import TableLock
from ..tables import (CLOCK_DIVERGENCE, REFERENCE_OP, Table, clock_diverged, op_row_key,
                      profile_reference_baseline, provenance_path, reference_base,
                      read_provenance, reference_baseline, table_path, write_json_atomic)
from .adb import adb_available
from .claims import SharedJob, chunks_of, parse_device, share_job
from .jobprov import finish_provenance as _finish_provenance
from .jobprov import job_provenance as _provenance
from .jobprov import now_iso, reference_summary  # noqa: F401 (re-exported)
from .export import ConversionPool, ExportCache, quick_export
from .pinning import allowed_cpus
from .profiles import DeviceProfile, as_profile, make_runner
from .timing import DriftGuard, MeasureSettings


@dataclass
class JobSummary:
    """Outcome of a measurement job: rows measured, skipped, time, throughput; ``rows``: the
    table's rows (measured now or before) of the items asked for, in their order."""
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
    rows: list[dict] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """The summary as a JSON-ready dict (without ``rows``)."""
        return {k: v for k, v in self.__dict__.items() if k != "rows"}


def _rows_of(table: Table, items: list) -> list[dict]:
    """The rows ``table`` holds for ``items`` (keys first), in their order."""
    have = {r[table.key]: r for r in table.read(ignore_torn=True)}
    return [have[it[0]] for it in items if it[0] in have]


# -- conversion ahead of timing ------------------------------------------------------
def _module_for(kind: str, payload):
    from space.build import build_model, build_op, input_shape, op_input_shape

    if kind == "op":
        return build_op(payload), op_input_shape(payload)
    return build_model(payload), input_shape(payload)


def _is_cached(cache: ExportCache, profile: DeviceProfile, kind: str, payload) -> bool:
    """Whether the model of one row is already in the export cache (always, for eager runtimes)."""
    options = profile.backend.export_options(profile)
    return options is None or cache.lookup(*_module_for(kind, payload), **options) is not None


def _conversion(jobs: list[tuple[str, object]], profile: DeviceProfile, cache: ExportCache,
                cpus: list[int] | None, processes: int = 1,
                convert_all: bool = False) -> ConversionPool | None:
    """The jobs' conversion ahead of their timing, in a pinned worker; None: nothing to wait for.

    With the direct .tflite writer (milliseconds a model) there is no worker: the runner's
    load writes each model in this process, or ``wait(i)`` does with ``convert_all``.
    """
    options = profile.backend.export_options(profile)
    if options is None or not jobs:
        return None
    quick = quick_export(options["fmt"], options.get("converter", "direct"))
    if quick and not convert_all:
        return None
    return ConversionPool([functools.partial(_module_for, k, p) for k, p in jobs], cache, options,
                          processes=processes, cpus=cpus, background=not quick)


def _progress_bar(enabled: bool, total: int, initial: int, unit: str, desc: str):
    """A tqdm bar with ETA on stderr, or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, file=sys.stderr,
                dynamic_ncols=True)


def _close(pre: ConversionPool | None, bar) -> None:
    if pre is not None:
        pre.close()
    if bar is not None:
        bar.close()


def _available(prof: DeviceProfile, device: str | None) -> None:
    """Raise unless ``prof`` runs here (on the phone ``device`` names, for ``adb:SERIAL``)."""
    serial = parse_device(device).serial if device is not None else None
    if serial:  # a phone adb does not list is refused, whatever the profile
        ok, why = adb_available(serial)
        if not ok:
            raise ValueError(f"device {device!r}: {why}")
        if not prof.backend.off_host:
            raise ValueError(f"device {device!r} is a phone, but profile {prof.name!r} times "
                             f"this machine; use --profile android-adb")
    ok, why = prof.available(serial) if serial else prof.available()
    if not ok:
        raise ValueError(f"profile {prof.name!r} cannot run here"
                         f"{f' (device {device!r})' if serial else ''}: {why}")


# -- the generic chunked loop ---------------------------------------------------------
def _run_chunks(**kw) -> JobSummary:
    """:func:`_run_held`, holding the table's write lock (:mod:`surrogate.tablelock`) when the
    job appends to the table itself: a second writer is refused at once, never a duplicate."""
    if kw.get("shared") is not None:
        return _run_held(**kw)  # part tables go by chunk claims
    # --convert-only appends no row but rewrites the provenance: it takes the lock as well
    with TableLock(kw["table"].path, "converting for" if kw.get("convert_only") else "measuring into"):
        return _run_held(**kw)


def _pending(table: Table, items: list, cache: ExportCache, profile: DeviceProfile,
             settings: MeasureSettings, *, convert_only: bool, cached_only: bool,
             shared: SharedJob | None) -> tuple[list, int]:
    """(the items still to do, how many were left out as not converted yet)."""
    done = (shared.held() if shared else {r[table.key] for r in table.read(ignore_torn=True)}
            if convert_only else table.done_keys())
    todo = [it for it in items if it[0] not in done]
    if todo and not convert_only:  # a complete table is never appended to: no mixing
        table.check_timing(settings.clock, settings.estimator)
    not_converted = 0
    if cached_only and not convert_only:  # time what is converted; leave the rest for later
        kept = [it for it in todo if _is_cached(cache, profile, it[1], it[2])]
        not_converted = len(todo) - len(kept)
        todo = kept
    return todo, not_converted


def _new_session(prov: dict, profile: DeviceProfile, settings: MeasureSettings, skipped: int,
                 shared: SharedJob | None, cached_only: bool, not_converted: int) -> dict:
    """The provenance session record of one run, before anything is timed."""
    session = {"started": now_iso(), "measured": 0, "skipped_existing": skipped,
               "clock": settings.clock, "estimator": settings.estimator,
               "clock_divergence_threshold": CLOCK_DIVERGENCE,
               "converter": _converter_name(profile),
               "host": prov["host"].get("host"), "reference_chunks": []}
    if shared:
        session.update({"device": shared.device.name, "claims": str(shared.claims.dir)})
    if cached_only:
        session["skipped_not_converted"] = not_converted
    return session


def _drift_guard(table: Table, settings: MeasureSettings, shared: SharedJob | None,
                 reference_base_ms: float | None) -> tuple[DriftGuard, float | None]:
    """The run's drift guard (and base of a ``+ref`` table) and the folder's reference baseline."""
    folder = shared.folder if shared else table.path.parent
    baseline = (profile_reference_baseline(folder, settings.clock, settings.estimator)
                or reference_baseline(table))
    guard = DriftGuard(settings, baseline,
                       base_ms=(reference_base_ms
                                or (shared and reference_base(shared.main, settings.clock,
                                                              settings.estimator))
                                or reference_base(table, settings.clock, settings.estimator))
                       if settings.paired else None)
    return guard, baseline


def _row(ident: dict, r, ref_ms: float, stamp: str) -> dict:
    """One table row from an item's timing result."""
    return {**ident, "median_ms": r.median_ms, "wall_ms": r.wall_ms,
            "cpu_ms": r.cpu_ms, "clock": r.clock, "estimator": r.estimator,
            "clock_diverged": clock_diverged(r.wall_ms, r.cpu_ms),
            "mean_ms": r.mean_ms,
            "std_ms": r.std_ms, "p10_ms": r.p10_ms, "p90_ms": r.p90_ms,
            "iqr_ms": r.iqr_ms, "cv": r.cv, "rel_spread": r.rel_spread,
            "n_runs": r.n_runs, "n_rounds": r.n_rounds,
            "remeasured": r.remeasured, "ref_ms": ref_ms, "measured_at": stamp}


def _time_chunk(runner, pre, c0: int, part: list, guard: DriftGuard, ref_fn, settings: MeasureSettings,
                session: dict) -> list[dict]:
    """Load and time one chunk beside the reference operator; its rows."""
    fns = {}
    for j, (key, b, p, _) in enumerate(part):
        if pre is not None:
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
    return [_row(ident, report.results[key], ref_ms, stamp) for key, _, _, ident in part]


def _end_session(session: dict, prov: dict, guard: DriftGuard, settings: MeasureSettings, *,
                 measured: int, wall: float, convert_s: float, interrupted: bool, outcome: str) -> None:
    """Close the run's session record (also after Ctrl-C or an error)."""
    session.update({"finished": now_iso(), "measured": measured, "wall_s": round(wall, 1),
                    "convert_s": round(convert_s, 1), "interrupted": interrupted,
                    "status": outcome,
                    "per_minute": round(measured / wall * 60, 2) if wall > 0 else None,
                    "drift_guard": guard.as_dict()})
    if settings.paired and guard.base_ms is not None:
        prov["reference_base_ms"] = guard.base_ms
        session["reference_base_ms"] = guard.base_ms


def _runner(profile: DeviceProfile, cache: ExportCache, shared: SharedJob | None,
            convert_all_cores: bool) -> tuple:
    """(the runner, the converter's cores, how many conversion processes)."""
    runner = make_runner(profile, cache, **({"serial": shared.device.serial}
                                            if shared and shared.device.serial else {}))
    # the converter's cores are decided before this process pins itself to the timing
    # core (a worker spawned after pinning would inherit it and share the timing core)
    free = runner.free_cpus() or None
    n_proc = 1
    if convert_all_cores:  # conversion finishes before any timing (one chunk): use every core
        free = sorted(runner.cpus_before_pin)
        n_proc = len(free)
    return runner, free, n_proc


def _await_conversion(pre, free, runner, n_jobs: int) -> None:
    """Wait for the reference's conversion (for every conversion when there is one core)."""
    if pre is not None and not free and runner.pinned_core is not None:
        # one core: the converter would share the timing core, so convert everything first
        for i in range(n_jobs):
            pre.wait(i)
    if pre is not None:
        pre.wait(0)


def _run_held(*, table: Table, items: list[tuple[str, str, object, dict]],
              profile: DeviceProfile, settings: MeasureSettings, chunk: int,
              cache_dir: Path | None, progress: bool, kind: str, space: str,
              extra_prov: dict | None = None, convert_all_cores: bool = False,
              on_chunk: Callable[[int], None] | None = None,
              convert_only: bool = False, cached_only: bool = False,
              reference_base_ms: float | None = None,
              shared: SharedJob | None = None) -> JobSummary:
    """items: (row_key, build_kind, payload, row_identity_columns); ``shared``: this
    device's part of a job several devices measure (``table`` is then its part table)."""
    t0 = time.perf_counter()
    total = len(items)
    cache = ExportCache(cache_dir)
    todo, not_converted = _pending(table, items, cache, profile, settings, convert_only=convert_only,
                                   cached_only=cached_only, shared=shared)
    if not todo:  # complete: no converter, no pinning, provenance untouched
        return JobSummary(str(table.path), 0, total - not_converted, total, time.perf_counter() - t0,
                          0.0, 0.0, False, convert_only=convert_only, not_converted=not_converted,
                          rows=_rows_of(table, items))
    if convert_only:
        return _convert_only(todo, items, profile, cache, progress, t0, table)
    runner, free, n_proc = _runner(profile, cache, shared, convert_all_cores)
    prov = _provenance(table, profile, space, kind, settings, runner.describe(), extra_prov or {})
    session = _new_session(prov, profile, settings, total - len(todo) - not_converted, shared,
                           cached_only, not_converted)
    bar = _progress_bar(progress, total, total - len(todo), kind[:-1] if kind.endswith("s") else kind,
                        f"{profile.name} {table.path.name}")
    jobs = [(("op", REFERENCE_OP))] + [(b, p) for _, b, p, _ in todo]
    # shared: chunks are claimed as they come, so each is converted when loaded
    pre = None if shared else _conversion(jobs, profile, cache, free, processes=n_proc)
    runner.ensure_pinned()
    session["converter_cpus"] = free
    session["timing_cpu"] = runner.pinned_core
    measured = 0
    interrupted = False
    guard, session["drift_baseline_ms"] = _drift_guard(table, settings, shared, reference_base_ms)

    def checkpoint() -> None:
        if settings.paired and guard.base_ms is not None:
            prov["reference_base_ms"] = guard.base_ms
        _finish_provenance(table, prov, {**session, "measured": measured}, running=True)

    checkpoint()
    outcome = "failed"  # an exception other than Ctrl-C leaves this
    try:
        _await_conversion(pre, free, runner, len(jobs))
        ref_mod, ref_shape = _module_for("op", REFERENCE_OP)
        ref_fn = runner.timer(runner.load(ref_mod, ref_shape, name="reference"))
        for c0, part, claim in chunks_of(todo, items, chunk, shared):
            rows = _time_chunk(runner, pre, c0, part, guard, ref_fn, settings, session)
            table.append(rows)
            if claim is not None:
                claim.finish(len(rows))
            measured += len(rows)
            checkpoint()
            if bar is not None:
                bar.update(len(rows))
            if on_chunk is not None:
                on_chunk(measured)
        outcome = "finished"
    except KeyboardInterrupt:
        interrupted, outcome = True, "interrupted"
    finally:
        _close(pre, bar)
        runner.unpin()  # the caller gets its cores back
        convert_s = cache.convert_seconds  # the workers' and the runner's loads'
        wall = time.perf_counter() - t0
        _end_session(session, prov, guard, settings, measured=measured, wall=wall,
                     convert_s=convert_s, interrupted=interrupted, outcome=outcome)
        _finish_provenance(table, prov, session)
    return JobSummary(str(table.path), measured, total - len(todo) - not_converted, total, wall,
                      convert_s, measured / wall * 60 if wall > 0 else 0.0, interrupted,
                      not_converted=not_converted, rows=_rows_of(table, items))


def _converter_name(profile: DeviceProfile) -> str:
    """What writes the profile's model files (the .tflite converter, ``onnx``, or ``none``)."""
    options = profile.backend.export_options(profile)
    return "none" if options is None else options.get("converter", options["fmt"])


def _convert_only(todo: list, items: list, profile: DeviceProfile, cache: ExportCache,
                  progress: bool, t0: float, table: Table) -> JobSummary:
    """Convert the rows still to time on every allowed core, timing nothing.

    For a later timing run on a quiet machine: conversion dominates the cost of a
    table (about 1 s per layer with litert-torch), and with nothing being timed it may
    use all cores.
    """
    cpus = allowed_cpus()
    jobs = [("op", REFERENCE_OP)] + [(b, p) for _, b, p, _ in todo]
    bar = _progress_bar(progress, len(jobs), 0, "model", f"{profile.name} converting")
    pre = _conversion(jobs, profile, cache, cpus, processes=len(cpus), convert_all=True)
    interrupted = False
    started = now_iso()
    try:
        for i in range(len(jobs)):
            if pre is not None:
                pre.wait(i)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _close(pre, bar)
    wall = time.perf_counter() - t0
    # the conversion cost belongs to the table's wall time: record it beside the timing sessions
    prov = read_provenance(table.path, strict=True) or {}
    prov["conversions"] = prov.get("conversions", []) + [{
        "started": started, "finished": now_iso(), "models": len(jobs), "wall_s": round(wall, 1),
        "convert_s": round(cache.convert_seconds, 1), "cpus": cpus, "interrupted": interrupted}]
    write_json_atomic(provenance_path(table.path), prov)
    return JobSummary(f"{len(jobs)} models in {cache.dir}", 0, len(items) - len(todo), len(items),
                      wall, cache.convert_seconds, 0.0, interrupted, convert_only=True,
                      rows=_rows_of(table, items))


def resolve_clock(profile: DeviceProfile,
                  settings: MeasureSettings | None) -> tuple[DeviceProfile, MeasureSettings]:
    """The profile and settings of a job, agreeing on the latency clock.

    Settings default to the profile's warm-up/runs/rounds; ``settings.clock`` None
    takes the profile's clock, an explicit one replaces it in the profile (validated
    there: ``cpu`` only for local 1-thread CPU runtimes); ``settings.estimator``
    None takes the profile's estimator.
    """
    if settings is None:
        spec = profile.timing_spec
        settings = MeasureSettings(warmup=spec.warmup, runs=spec.runs, rounds=spec.rounds)
    clock, estimator = settings.clock or profile.clock, settings.estimator or profile.estimator
    if (clock, estimator) != (profile.clock, profile.estimator):
        profile = dataclasses.replace(profile, clock=clock, estimator=estimator)
    spec = profile.timing_spec
    return profile, dataclasses.replace(settings, clock=spec.clock, estimator=spec.estimator)


def measure_ops(profile: str | DeviceProfile, space: str, *, out_dir: str | os.PathLike | None = None,
                settings: MeasureSettings | None = None, chunk: int = 48,
                limit: int | None = None, cache_dir: str | os.PathLike | None = None,
                progress: bool = True, configs: Sequence[LayerConfig] | None = None,
                convert_only: bool = False, cached_only: bool = False,
                device: str | None = None, claims: str | os.PathLike | None = None) -> JobSummary:
    """Measure every distinct operator configuration of ``space`` (resumable).

    ``limit`` measures only the first N configurations (sorted by key);
    ``configs`` overrides the list (tests, the operators of reference networks, the
    op-level model's gaps); ``space`` then only names the table and need not be a space;
    ``convert_only`` converts the rows still missing on every core and times nothing;
    ``cached_only`` times only the rows whose model is already converted (the rest
    stay for a later run), so nothing converts beside the timing.
    ``device`` (``core:N``, ``adb:SERIAL`` or a name) measures this device's share of a
    job several devices run at once, into its part table (:mod:`.claims`; merge with
    :func:`.merge.merge_parts`); ``claims`` is the folder of the claim files
    (default ``<stem>.claims`` beside the table).
    """
    from space.spaces import get_space

    prof = as_profile(profile)
    _available(prof, device)
    if configs is not None:
        plain_name(space, "table name")  # any name: the table stays inside the profile folder
    ops = list(configs) if configs is not None else get_space(space).operator_configs()
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        ops = ops[:limit]
    table = Table.ops(table_path(prof.name, space, "ops", out_dir))
    items = [(lc.key(), "op", lc, op_row_key(lc)) for lc in ops]
    prof, settings = resolve_clock(prof, settings)
    table, prof, shared = share_job(table, items, chunk, prof, device, claims)
    return _run_chunks(table=table, items=items, profile=prof, settings=settings,
                       chunk=chunk, cache_dir=Path(cache_dir) if cache_dir else None,
                       progress=progress, kind="ops", space=space, convert_only=convert_only,
                       cached_only=cached_only, shared=shared)


def measure_models(profile: str | DeviceProfile, space: str, archs: Iterable[tuple[Arch, str]], *,
                   out_dir: str | os.PathLike | None = None,
                   settings: MeasureSettings | None = None, chunk: int = 16,
                   cache_dir: str | os.PathLike | None = None, progress: bool = True,
                   table_name: str | None = None, convert_all_cores: bool = False,
                   convert_only: bool = False, cached_only: bool = False,
                   reference_base_ms: float | None = None, device: str | None = None,
                   claims: str | os.PathLike | None = None) -> JobSummary:
    """Time whole networks end to end into ``<space>_models.csv`` (resumable).

    ``archs`` yields ``(arch, source)`` pairs; source says where the row came
    from (``random:seed=0``, ``reference:mnasnet-a1``, ``file:archs.txt``).
    ``convert_only`` converts the rows still missing on every core and times nothing;
    ``cached_only`` times only rows whose model is already converted.
    ``reference_base_ms`` puts a new ``+ref`` table on another table's scale
    (:func:`surrogate.tables.table_timing`), e.g. finalists beside the predictor's tables.
    ``device``/``claims``: one device's share of a job several run (see :func:`measure_ops`).
    """
    if table_name is not None:
        plain_name(table_name, "table name")  # stays inside the profile folder
    prof = as_profile(profile)
    _available(prof, device)
    seen, items = set(), []
    for a, source in archs:
        s = format_arch(a)
        if s in seen:
            continue
        seen.add(s)
        c = count(a)
        items.append((s, "model", a, {"arch": s, "space": space, "source": source,
                                       "params": c.params, "madds": c.madds}))
    table = Table.models(named_table_path(prof.name, table_name, out_dir) if table_name
                         else table_path(prof.name, space, "models", out_dir))
    prof, settings = resolve_clock(prof, settings)
    table, prof, shared = share_job(table, items, chunk, prof, device, claims)
    return _run_chunks(table=table, items=items, profile=prof, settings=settings,
                       chunk=chunk, cache_dir=Path(cache_dir) if cache_dir else None,
                       progress=progress, kind="models", space=space, shared=shared,
                       convert_all_cores=convert_all_cores and len(items) <= chunk,
                       convert_only=convert_only, cached_only=cached_only,
                       reference_base_ms=reference_base_ms)
