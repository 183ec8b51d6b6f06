"""Latency objectives for search: a shipped/saved predictor, or measured timings."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np

from space import format_arch
from space.spaces import get_space
from surrogate.timingspec import HOST_REFERENCE_TOLERANCE, HOST_REFERENCE_TOLERANCE_PAIRED  # noqa: F401


class PredictedLatency:
    """Latency (ms) from the predictor shipped for (profile, space), or one saved at ``path``."""

    def __init__(self, profile: str, space: str, path: str | os.PathLike | None = None):
        from surrogate.predict.persist import load_predictor
        from surrogate.paths import shipped_predictor_dir

        self.profile, self.space_name = profile, space
        self.space = get_space(space)
        where = Path(path) if path else shipped_predictor_dir(profile, space)
        if not (where / "meta.json").is_file():
            raise FileNotFoundError(
                f"no latency predictor for profile {profile!r} and space {space!r} at {where}; "
                f"fit one with: mnas fit --profile {profile} --space {space} -o {shlex.quote(str(where))}")
        self.predictor = load_predictor(where, space=space, profile=profile)
        self.phone = type(self.predictor).__name__ == "CrossDeviceLatency"
        if self.phone:  # a phone predictor prices any network: cover the space's operators once
            self._cover_space()
        self.source = str(where)
        self.n_evaluated = 0
        self._fingerprint: str | None = None

    def _cover_space(self) -> None:
        from surrogate.measure.ondemand import cover_predictor

        self.ops_report = cover_predictor(self.predictor, configs=self.space.operator_configs())

    @property
    def fingerprint(self) -> str:
        """The predictor's content (:func:`predictor_fingerprint`): a study records it."""
        if self._fingerprint is None:
            self._fingerprint = predictor_fingerprint(self.source)
        return self._fingerprint

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """Latency of an ``(n, d)`` array of canonical index vectors."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1, self.space.n_decisions)
        self.n_evaluated += len(idx)
        if self.phone:
            return np.asarray(self.predictor.predict([self.space.to_arch(i) for i in idx]), dtype=np.float64)
        return np.asarray(self.predictor.predict(idx), dtype=np.float64)

    def describe(self) -> dict:
        """What predicts: profile, space, predictor path, model class, table hash."""
        meta = getattr(self.predictor, "meta_", {})
        table = meta.get("table") or {}
        return {"kind": "predicted", "profile": self.profile, "space": self.space_name,
                "predictor": self.source, "model": meta.get("class"),
                "table_sha256": table.get("sha256"), "table_source": _table_path(table.get("source"))}


#: ``meta.json`` entries that describe when and with what a predictor was saved, not what it predicts
_PROVENANCE = ("saved", "versions")


def predictor_fingerprint(folder: str | os.PathLike) -> str:
    """``pred-`` and a digest of a saved predictor folder's files, ``meta.json`` without its
    save time, library versions and table path: the same predictor saved twice, or copied
    elsewhere, has one fingerprint; another fit or table has another."""
    import hashlib
    import json

    root = Path(folder)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        data = f.read_bytes()
        if rel == "meta.json":
            meta = {k: v for k, v in json.loads(data).items() if k not in _PROVENANCE}
            if isinstance(meta.get("table"), dict):
                meta["table"] = {k: v for k, v in meta["table"].items() if k != "source"}
            data = json.dumps(meta, sort_keys=True).encode()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return "pred-" + h.hexdigest()[:16]


def _table_path(source: str | None) -> str | None:
    """A predictor's table file, or None when it is not there.

    ``source`` is absolute as saved, or portable for a shipped predictor
    (``data/latency_tables/<profile>/<file>``), found by :func:`surrogate.paths.resolve_source`
    (``$MNAS_TABLES_DIR``, then the shipped tables), so a non-editable install finds it too.
    """
    from surrogate.paths import resolve_source

    return next((str(p) for p in resolve_source(source) if p.is_file()), None)


LATENCY_SOURCES = ("auto", "shipped", "host")


def reference_tolerance(table: str | os.PathLike) -> float:
    """How far this host's reference operator may differ from ``table``'s before it is another
    host: the tolerance of its timing (:class:`surrogate.timingspec.TimingSpec`)."""
    from surrogate.timingspec import TimingSpec

    return (TimingSpec.from_table(table) or TimingSpec()).tolerance


#: networks timed to calibrate this host's table sum when the main job measures it
MAIN_JOB_NETWORKS = 12


def host_latency(profile: str, space: str, *, source: str = "auto", networks: int = MAIN_JOB_NETWORKS,
                 progress: bool = True, log=print) -> tuple[PredictedLatency, dict]:
    """The latency objective for *this* host, and a note on how it was chosen.

    ``shipped``: the predictor shipped for (profile, space). ``host``: this host's own
    (``mnas measure host``), measured now if it does not exist. ``auto``: the shipped
    one when its tables came from this host kind and this host's reference operator
    runs within :func:`reference_tolerance` of theirs (10%, or 50% for reference-paired
    tables); else this host's own,
    measured now when missing (the operator table and ``networks`` networks: about a
    minute for anb).
    """
    from surrogate.measure.host import host_identity, host_match, predictor_table
    from surrogate.measure.hostjob import (host_timing_mismatch, local_predictor, measure_host,
                                           reference_ms_here)
    from surrogate.paths import shipped_predictor_dir

    if source not in LATENCY_SOURCES:
        raise ValueError(f"latency source must be one of {', '.join(LATENCY_SOURCES)}, got {source!r}")
    note: dict = {"source": source}
    shipped = shipped_predictor_dir(profile, space)
    if source == "auto":
        table = predictor_table(str(shipped), profile, space)
        if table is None:
            note["reason"] = "no shipped tables for this profile and space"
            source = "host"
        else:
            here = reference_ms_here(profile)
            m = host_match(table, reference_ms_here=here, this_host=host_identity())
            ratio = m.reference_ratio
            note.update(same_host_kind=m.same, reference_ms_here=here, reference_ms_table=m.reference_ms_table,
                        differences=m.differences)
            tol = reference_tolerance(table)
            note["reference_tolerance"] = tol
            off = ratio is not None and abs(ratio - 1) > tol
            if m.same is True and not off:
                note["chosen"] = "shipped"
                return PredictedLatency(profile, space), note
            why = (f"the shipped tables came from another host ({'; '.join(m.differences[:2])})" if m.same is False
                   else "the shipped tables' host cannot be told from their provenance" if m.same is None
                   else f"the reference operator runs {here:.3f} ms here against {m.reference_ms_table:.3f} ms "
                        f"in the shipped tables ({100 * (ratio - 1):+.0f}%)")
            note["reason"] = why
            source = "host"
    if source == "shipped":
        note["chosen"] = "shipped"
        return PredictedLatency(profile, space), note
    path = local_predictor(profile, space)
    stale = host_timing_mismatch(profile, space) if path is None else None
    if stale:
        note["stale_host_tables"] = stale
        log(f"this host's own {space} tables cannot be reused: {stale}; they are set aside")
    if path is None:
        log(f"{note.get('reason', 'asked for this host')}: measuring this host first "
            f"(the {space} operator table and {networks} networks; later runs reuse them; "
            f"more networks: mnas measure host --space {space})")
        res = measure_host(profile, space, networks=networks, progress=progress, log=lambda *a: None)
        note["measured"] = {"ops": res.ops, "networks": res.networks, "ops_s": res.ops_wall_s,
                            "networks_s": res.models_wall_s, "loo_mape": res.fit["loo"]["mape"]}
        path = Path(res.predictor_dir)
    elif "reason" in note:
        log(f"{note['reason']}: using this host's own predictor ({path})")
    note["chosen"] = "host"
    note["predictor"] = str(path)
    return PredictedLatency(profile, space, path), note


class MeasuredLatency:
    """Latency looked up in a measured end-to-end table (``<space>_models.csv``)."""

    def __init__(self, profile: str, space: str, root: str | os.PathLike | None = None):
        from surrogate.predict.workflow import load_timings

        self.profile, self.space_name = profile, space
        self.space = get_space(space)
        archs, y = load_timings(profile, space, root)
        self.table = dict(zip(archs, y))
        self.n_evaluated = 0
        self._check_coverage()

    @property
    def fingerprint(self) -> str:
        """``table-`` and a digest of the timed networks and their latencies (a study records it)."""
        import hashlib

        text = "\n".join(f"{a}\t{float(v)!r}" for a, v in sorted(self.table.items()))
        return "table-" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def _check_coverage(self, n_probe: int = 64) -> None:
        """Fail upfront, not mid-search, when the table does not cover the space."""
        rng = np.random.default_rng(0)
        probe = self.space.sample_indices(rng, n_probe)
        missing = sum(format_arch(self.space.to_arch(row)) not in self.table for row in probe)
        if missing:
            raise ValueError(
                f"--latency measured needs every network of {self.space_name!r} timed, but the "
                f"{self.profile}/{self.space_name} table has {len(self.table)} rows and lacks "
                f"{missing} of {n_probe} sampled networks; use --latency predicted")

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """Measured latency (ms) of each row of decision indices, from the table."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1, self.space.n_decisions)
        out = np.empty(len(idx))
        for i, row in enumerate(idx):
            key = format_arch(self.space.to_arch(row))
            if key not in self.table:
                raise ValueError(f"no measured latency for {key} in the {self.profile}/"
                                 f"{self.space_name} table")
            out[i] = self.table[key]
        self.n_evaluated += len(idx)
        return out

    def describe(self) -> dict:
        """What measures: profile, space and the number of timed rows."""
        return {"kind": "measured", "profile": self.profile, "space": self.space_name,
                "rows": len(self.table)}
