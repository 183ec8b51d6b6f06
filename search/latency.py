"""Latency objectives for search: a shipped/saved predictor, or measured timings."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from space import format_arch
from space.spaces import get_space


class PredictedLatency:
    """Latency (ms) from the predictor shipped for (profile, space), or one saved at ``path``."""

    def __init__(self, profile: str, space: str, path: str | os.PathLike | None = None):
        from surrogate.predict.persist import load_predictor
        from surrogate.predict.workflow import default_predictor_dir

        self.profile, self.space_name = profile, space
        self.space = get_space(space)
        where = Path(path) if path else default_predictor_dir(profile, space)
        if not (where / "meta.json").is_file():
            raise FileNotFoundError(
                f"no latency predictor for profile {profile!r} and space {space!r} at {where}; "
                f"fit one with: mnas fit --profile {profile} --space {space} -o {where}")
        self.predictor = load_predictor(where, space=space, profile=profile)
        self.source = str(where)
        self.n_evaluated = 0

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """Latency of an ``(n, d)`` array of canonical index vectors."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1, self.space.n_decisions)
        self.n_evaluated += len(idx)
        return np.asarray(self.predictor.predict(idx), dtype=np.float64)

    def describe(self) -> dict:
        """What predicts: profile, space, predictor path, model class, table hash."""
        meta = getattr(self.predictor, "meta_", {})
        return {"kind": "predicted", "profile": self.profile, "space": self.space_name,
                "predictor": self.source, "model": meta.get("class"),
                "table_sha256": (meta.get("table") or {}).get("sha256")}


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
