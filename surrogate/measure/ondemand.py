"""Operators measured on demand: the host table behind the cross-device predictors.

A phone predictor (:class:`~surrogate.predict.crossdevice.CrossDeviceLatency`) prices a
network from this host's operator times. The shipped ``<profile>/reference_ops.csv``
holds every operator of the registered reference networks (``mnas measure ops
--reference``). An operator it lacks (a new width, resolution or block) is measured
here when this host is of the table's host kind and the profile's runtime runs: the
direct writer converts it in milliseconds and timing takes a fraction of a second. The
row goes to this host's own cache (``$MNAS_HOME/hosts/<id>/latency_tables/<profile>/
reference_ops.csv``, with provenance), never into the shipped table. On another host
kind, or without the runtime, the operator is modelled by an operator-level model
fitted on the table, and :func:`ensure_ops` says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from space.arch import Arch, LayerConfig

from ..predict.optable import OpTable
from ..paths import DEFAULT_PROFILE, table_path

TABLE = "reference"  # <profile>/reference_ops.csv


@dataclass(frozen=True)
class OpsReport:
    """What :func:`ensure_ops` did: operators found, measured now, modelled, and why."""

    found: int
    measured_now: int
    modelled: int
    note: str = ""


def host_op_table(profile: str = DEFAULT_PROFILE, root: str | os.PathLike | None = None) -> OpTable:
    """The profile's reference operator table (shipped, or under ``root``) plus this host's cache
    when this host is of the table's host kind."""
    path = table_path(profile, TABLE, "ops", root)
    if not path.is_file():
        raise FileNotFoundError(f"no reference operator table for profile {profile!r} at {path}; "
                                f"measure it with: mnas measure ops --profile {profile} --reference")
    table = OpTable.from_csv(path)
    cache = _cache_path(profile)
    if cache.is_file() and _same_host(path) and cache.resolve() != path.resolve():
        extra = OpTable.from_csv(cache).entries
        table = OpTable({**extra, **table.entries}, profile=profile, space=TABLE, sha256=table.sha256,
                        source=table.source)
    return table


def _cache_path(profile: str) -> Path:
    from .hostjob import host_tables_dir

    return table_path(profile, TABLE, "ops", host_tables_dir())


def _same_host(path: Path) -> bool:
    from .host import host_match

    try:
        return host_match(path).same is True
    except (OSError, ValueError):
        return False


def reference_networks() -> list[Arch]:
    """Every registered reference network, plus the variants the published phone rows name
    (when the truth set is found, see :func:`surrogate.datasets.load_published_phones`)."""
    from space.reference import REFERENCE, resolve_arch

    names = set(REFERENCE)
    try:
        from ..datasets import load_published_phones

        names |= set(load_published_phones()["arch_name"].dropna())
    except (OSError, ValueError, ImportError):
        pass  # the registry alone
    return [resolve_arch(n) for n in sorted(names)]


def reference_configs(archs: Iterable[Arch]) -> list[LayerConfig]:
    """The distinct non-identity operators of ``archs``, sorted by key."""
    seen: dict[str, LayerConfig] = {}
    for a in archs:
        for lc in a.ops():
            if not lc.is_identity:
                seen.setdefault(lc.key(), lc)
    return [seen[k] for k in sorted(seen)]


def ensure_ops(archs: Iterable[Arch], table: OpTable, profile: str = DEFAULT_PROFILE, *,
               measure: bool = True, progress: bool = False, same_host: bool | None = None,
               configs: Iterable[LayerConfig] | None = None) -> tuple[OpTable, OpsReport]:
    """``table`` able to price every operator of ``archs``, and how that was done.

    Missing operators are measured into this host's cache when ``measure`` is set, this
    host is of the table's host kind and the runtime runs; otherwise the returned table
    answers them with an operator-level model fitted on ``table`` (``OpsReport.note``
    says why). ``same_host``: whether this host is of the table's host kind, when the
    caller knows (a saved predictor's table has no provenance beside it). ``configs``:
    operators to cover besides those of ``archs`` (e.g. a whole space's, before a sweep).
    """
    seen = {lc.key(): lc for lc in reference_configs(archs)}
    for lc in configs or ():
        if not lc.is_identity:
            seen.setdefault(lc.key(), lc)
    configs = [seen[k] for k in sorted(seen)]
    missing = [lc for lc in configs if lc.key() not in table.entries]
    found = len(configs) - len(missing)
    if not missing:
        return table, OpsReport(found, 0, 0)
    why = _cannot_measure(table, profile, same_host) if measure else "measuring was not asked for"
    if why is None:
        from .jobs import measure_ops
        from .hostjob import host_tables_dir

        measure_ops(profile, TABLE, configs=missing, out_dir=host_tables_dir(), progress=progress)
        cache = OpTable.from_csv(_cache_path(profile)).entries
        merged = OpTable({**cache, **table.entries}, profile=table.profile, space=table.space,
                         sha256=table.sha256, source=table.source)
        still = [lc for lc in missing if lc.key() not in merged.entries]
        if not still:
            return merged, OpsReport(found, len(missing), 0,
                                     f"{len(missing)} operator(s) measured on this host now "
                                     f"(cached in {_cache_path(profile)})")
        table, missing, why = merged, still, "some operators failed to measure"
    from ..predict.pricing import oplevel_fallback

    fb = oplevel_fallback(table)
    return table.with_fallback(fb.predict_op), OpsReport(
        found, 0, len(missing), f"{len(missing)} operator(s) modelled by an operator-level model: {why}")


def _cannot_measure(table: OpTable, profile: str, same_host: bool | None) -> str | None:
    """None when this host can measure operators for ``table``, else why not."""
    from .profiles import as_profile

    if same_host is None:
        if not table.source or not Path(table.source).is_file():
            return "the operator table has no file to check its host against"
        same_host = _same_host(Path(table.source))
    if not same_host:
        return "this host is not of the table's host kind (mnas host)"
    try:
        prof = as_profile(profile)
    except ValueError as exc:
        return str(exc)
    ok, reason = prof.available()
    if not ok:
        return f"the {profile} runtime does not run here ({reason})"
    return None


def cover_predictor(est, archs: Iterable[Arch] = (), *, configs: Iterable[LayerConfig] | None = None,
                    measure: bool = True) -> OpsReport:
    """Let a saved phone predictor (``CrossDeviceLatency`` with ``meta_``) price ``archs`` and
    ``configs``: missing operators measured here when this host is of the kind that timed its
    table (recorded as ``train.host_id``), else modelled. Replaces ``est.table``."""
    from .host import host_identity

    train = (getattr(est, "meta_", None) or {}).get("train") or {}
    same = train.get("host_id") is not None and train.get("host_id") == host_identity()["host_id"]
    est.table, report = ensure_ops(archs, est.table, train.get("profile") or DEFAULT_PROFILE,
                                   measure=measure and same, same_host=same, configs=configs)
    return report
