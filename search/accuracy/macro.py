"""NAS-Bench-Macro as an accuracy objective: exact CIFAR-10 accuracy by canonical network.

The benchmark JSON (``nas_bench_macro/nas-bench-macro_cifar10.json``) is read from
the path the user gives or from ``$MNAS_BENCHMARKS_DIR``; it is never copied.
"""
from __future__ import annotations

import os

import numpy as np

from surrogate.datasets.macro import macro_rows
from surrogate.tables import file_sha256

from .base import AccuracyObjective, ArchLike, resolve_benchmark_file

MACRO_SUBDIR, MACRO_FILE = "nas_bench_macro", "nas-bench-macro_cifar10.json"


class MacroAccuracy(AccuracyObjective):
    """Exact NAS-Bench-Macro CIFAR-10 mean test accuracy (fraction), by canonical network.

    The benchmark lists 6,561 keys for 3,969 distinct networks. Equivalent keys
    (same canonical form) are averaged; in the published file they are identical
    (every field, spread 0.0, checked at load: :attr:`max_equivalent_spread`), so
    this equals the canonical key's own entry.
    """

    name = "macro"
    space_name = "nasbench-macro"

    def __init__(self, json_path: str | os.PathLike | None = None,
                 cache_path: str | os.PathLike | None = None) -> None:
        self.json_path = resolve_benchmark_file(json_path, MACRO_SUBDIR, MACRO_FILE,
                                                "NAS-Bench-Macro JSON")
        self._digest = file_sha256(self.json_path)
        data = macro_rows(self.json_path, partial=True)  # every key: classes are averaged
        classes: dict[tuple[int, ...], list[dict]] = {}
        for canon, row in zip(data.canonical, data.rows):
            classes.setdefault(tuple(int(v) for v in canon), []).append(row)
        self._acc: dict[tuple[int, ...], float] = {}
        self._records: dict[tuple[int, ...], dict] = {}
        spread = 0.0
        for canon, members in classes.items():
            accs = np.array([r["accuracy"] for r in members])
            if not np.isfinite(accs).all() or (accs < 0).any() or (accs > 1).any():
                raise ValueError(f"{self.json_path}: mean_acc of {members[0]['key']!r} is not a "
                                 f"percentage")
            spread = max(spread, float(accs.max() - accs.min()))
            self._acc[canon] = float(accs.mean())
            ck = members[0]["canonical_key"]
            rec = next((r for r in members if r["key"] == ck), members[0])
            self._records[canon] = {"key": ck, "keys": sorted(r["key"] for r in members),
                                    "accuracy": self._acc[canon], "std": rec["std"],
                                    "params": rec["params"], "flops": rec["flops"]}
        #: largest accuracy difference (fraction) between equivalent keys in the file
        self.max_equivalent_spread = spread
        self.n_keys = data.info["keys_in_file"]
        super().__init__(cache_path)

    @property
    def fingerprint(self) -> str:
        """Identity of the benchmark file (part of the cache key)."""
        return "json-" + self._digest[:16]

    @property
    def n_networks(self) -> int:
        """Number of distinct networks in the file."""
        return len(self._acc)

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty(len(idx), dtype=np.float64)
        for j, row in enumerate(idx):
            t = tuple(int(v) for v in row)
            if t not in self._acc:
                raise ValueError(f"macro: network {self.space.to_key(t)} is not in "
                                 f"{self.json_path.name}")
            out[j] = self._acc[t]
        return out

    def lookup_key(self, key: str) -> float:
        """Accuracy (fraction) of a benchmark key such as ``'01201122'``."""
        return self(self.space.from_key(key))

    def record(self, arch: ArchLike) -> dict:
        """The benchmark record of a network: key, equivalent keys, accuracy, std, params, flops."""
        t = self.indices(arch)
        if t not in self._records:
            raise ValueError(f"macro: network {self.space.to_key(t)} is not in {self.json_path.name}")
        return dict(self._records[t])

    def table(self) -> dict[str, np.ndarray]:
        """All distinct networks: canonical ``key``, ``idx`` (n, 8), ``accuracy``, ``params``, ``flops``."""
        canons = sorted(self._records)
        recs = [self._records[c] for c in canons]
        return {"key": np.array([r["key"] for r in recs]),
                "idx": np.array(canons, dtype=np.int64),
                "accuracy": np.array([r["accuracy"] for r in recs]),
                "params": np.array([r["params"] for r in recs], dtype=np.int64),
                "flops": np.array([r["flops"] for r in recs], dtype=np.int64)}


__all__ = ["MACRO_FILE", "MACRO_SUBDIR", "MacroAccuracy"]
