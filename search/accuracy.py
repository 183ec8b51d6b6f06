"""Accuracy objectives behind one interface, cached by canonical architecture.

Every objective has a ``name``, a search ``space``, ``__call__(arch) -> float``
(accuracy as a fraction in [0, 1]) and ``batch(archs) -> np.ndarray``. An ``arch``
is a :class:`space.Arch`, an architecture string or reference name, or an index
vector of the space. Results are cached in memory by the canonical string
``format_arch(space.to_arch(space.from_arch(arch)))`` and, optionally, in a
JSON-lines file shared across runs (``cache_path``).

Objectives
----------
``anb``
    :class:`AnbAccuracy`: an XGBoost surrogate fitted by this project on
    Accel-NASBench ``val_top1`` (ImageNet top-1 after the benchmark's 16-epoch
    proxy training), shipped in ``search/data/anb_accuracy.json`` with provenance
    in ``anb_accuracy.meta.json``; works offline. :func:`fit_anb_accuracy`
    re-creates it from the benchmark CSV.
``macro``
    :class:`MacroAccuracy`: exact NAS-Bench-Macro mean test accuracy (CIFAR-10).
``proxy-train``
    Real short training, provided by ``search.train.proxy`` (needs ``data``).

Benchmark files are never copied; they are read from a path the user gives (a
file, or a benchmarks folder with ``accel_nasbench/`` and ``nas_bench_macro/``),
or from ``$MNAS_BENCHMARKS_DIR``.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import os
import platform
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from space import Arch, format_arch, get_space, resolve_arch
from space.spaces import SearchSpace

ENV_BENCHMARKS = "MNAS_BENCHMARKS_DIR"
ANB_SUBDIR, ANB_FILE = "accel_nasbench", "anb_results.csv"
MACRO_SUBDIR, MACRO_FILE = "nas_bench_macro", "nas-bench-macro_cifar10.json"

#: the benchmark's own surrogate (Accel-NASBench paper, random 80/10/10 split)
ANB_ANCHOR = {"kendall_tau": 0.917, "r2": 0.984}
#: XGBoost settings picked by bench/anb_accuracy_surrogate.py on validation splits with
#: the one-standard-error rule (the smallest model within one SE of the best mean tau).
ANB_XGB_PARAMS: dict[str, Any] = {
    "n_estimators": 2000, "learning_rate": 0.02, "max_depth": 4, "subsample": 0.8,
    "colsample_bytree": 0.5, "min_child_weight": 2.0, "reg_lambda": 1.0,
    "objective": "reg:squarederror", "tree_method": "hist",
}
ANB_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
ANB_DEFAULT_SEED = 0
ANB_MODEL_NAME = "anb_accuracy.json"
ANB_META_NAME = "anb_accuracy.meta.json"
META_FORMAT = 1


# -- paths -----------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_benchmark_file(path: str | os.PathLike | None, subdir: str, filename: str,
                           what: str) -> Path:
    """The benchmark file ``filename`` from a file path, a folder, or ``$MNAS_BENCHMARKS_DIR``.

    A folder may be the benchmarks root (holding ``subdir/``) or ``subdir`` itself.
    ``FileNotFoundError`` names what was looked for; ``ValueError`` if no path is known.
    """
    if path is None or str(path) == "":
        env = os.environ.get(ENV_BENCHMARKS)
        if not env:
            raise ValueError(f"{what}: give the path to {filename} (or the benchmarks folder), "
                             f"e.g. --data DIR, or set ${ENV_BENCHMARKS}")
        path = env
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / subdir / filename, p / filename):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"{what}: no {subdir}/{filename} or {filename} under {p}")
    if p.is_file():
        return p
    raise FileNotFoundError(f"{what}: {p} does not exist")


def package_data_dir() -> Path:
    """Folder of the data shipped with the package (``search/data``, beside this module)."""
    here = Path(__file__).resolve().parent / "data"
    if here.is_dir():
        return here
    try:  # pragma: no cover - zipped or unusual installs
        from importlib.resources import files

        return Path(str(files("search.data")))
    except Exception:  # noqa: BLE001 - fall back to the module-relative path for the message
        return here


# -- the interface ------------------------------------------------------------------------------
ArchLike = Arch | str | Sequence[int] | np.ndarray


class AccuracyObjective(ABC):
    """An accuracy objective: ``obj(arch) -> float`` in [0, 1], cached by canonical arch.

    Subclasses set ``name`` and ``space_name`` and implement :meth:`_evaluate`
    (a batch of canonical index vectors -> accuracies) and :attr:`fingerprint`
    (identifies the model or data, so file caches of other versions are ignored).
    """

    name: str = ""
    space_name: str = ""

    def __init__(self, cache_path: str | os.PathLike | None = None) -> None:
        self.space: SearchSpace = get_space(self.space_name)
        self._cache: dict[str, float] = {}
        self._keys: dict[tuple[int, ...], str] = {}  # canonical indices -> canonical string
        #: number of architectures actually evaluated (cache misses)
        self.n_evaluated = 0
        #: cache-file lines ignored (other objective/fingerprint, or unreadable)
        self.cache_skipped = 0
        self.cache_path = Path(cache_path).expanduser() if cache_path else None
        if self.cache_path is not None:
            self._load_cache()

    # -- to be provided -----------------------------------------------------------------
    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """A short identifier of the model or data behind the objective."""

    @abstractmethod
    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        """Accuracies (fractions) of an ``(n, d)`` array of canonical index vectors."""

    # -- canonical forms -----------------------------------------------------------------
    def indices(self, arch: ArchLike) -> tuple[int, ...]:
        """Canonical index vector of ``arch`` (``ValueError`` if it is not in the space)."""
        if isinstance(arch, str):
            arch = resolve_arch(arch)
        if isinstance(arch, Arch):
            return self.space.from_arch(arch)
        if isinstance(arch, (list, tuple, np.ndarray)):
            arr = np.asarray(arch)
            if arr.ndim != 1:
                raise ValueError(f"{self.name}: an index vector must be 1-D, got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{self.name}: index vector must hold ints, got {arr.dtype}")
            return self.space.canonical(arr.tolist())
        raise ValueError(f"{self.name}: expected an Arch, an architecture string or an index "
                         f"vector of space {self.space.name!r}, got {type(arch).__name__}")

    def key(self, arch: ArchLike) -> str:
        """The canonical architecture string used as cache key."""
        return self._key_of(self.indices(arch))

    def _key_of(self, idx: tuple[int, ...]) -> str:
        key = self._keys.get(idx)
        if key is None:
            key = self._keys[idx] = format_arch(self.space.to_arch(idx))
        return key

    # -- evaluation --------------------------------------------------------------------
    def __call__(self, arch: ArchLike) -> float:
        """Accuracy of one architecture, as a fraction in [0, 1]."""
        return float(self.batch([arch])[0])

    def batch(self, archs: Iterable[ArchLike]) -> np.ndarray:
        """Accuracies of many architectures (an iterable or an ``(n, d)`` index array)."""
        if isinstance(archs, np.ndarray) and archs.ndim == 2:
            archs = list(archs)
        idx_list = [self.indices(a) for a in archs]
        keys = [self._key_of(i) for i in idx_list]
        missing: dict[str, tuple[int, ...]] = {}
        for k, i in zip(keys, idx_list):
            if k not in self._cache and k not in missing:
                missing[k] = i
        if missing:
            arr = np.array(list(missing.values()), dtype=np.int64).reshape(len(missing), -1)
            vals = np.asarray(self._evaluate(arr), dtype=np.float64).reshape(-1)
            if vals.shape != (len(missing),):
                raise RuntimeError(f"{self.name}: _evaluate returned {vals.shape} values "
                                   f"for {len(missing)} architectures")
            self.n_evaluated += len(missing)
            new = dict(zip(missing, (float(v) for v in vals)))
            self._cache.update(new)
            if self.cache_path is not None:
                self._append_cache(new)
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def cached(self) -> dict[str, float]:
        """A copy of the in-memory cache (canonical string -> accuracy)."""
        return dict(self._cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, space={self.space.name!r})"

    # -- file cache ----------------------------------------------------------------------
    def _load_cache(self) -> None:
        p = self.cache_path
        if p is None or not p.exists():
            return
        if not p.is_file():
            raise ValueError(f"cache_path {p} is not a file")
        fp = self.fingerprint
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    if rec["objective"] != self.name or rec["fingerprint"] != fp:
                        self.cache_skipped += 1
                        continue
                    acc = float(rec["accuracy"])
                    key = str(rec["arch"])
                except (ValueError, KeyError, TypeError):
                    self.cache_skipped += 1
                    continue
                if 0.0 <= acc <= 1.0:
                    self._cache[key] = acc
                else:
                    self.cache_skipped += 1

    def _append_cache(self, new: dict[str, float]) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        fp = self.fingerprint
        lines = "".join(json.dumps({"objective": self.name, "fingerprint": fp, "arch": k,
                                    "accuracy": v}) + "\n" for k, v in new.items())
        with open(self.cache_path, "a", encoding="utf-8") as fh:  # O_APPEND: safe across processes
            fh.write(lines)


# -- Accel-NASBench surrogate ---------------------------------------------------------------
def anb_feature_spec() -> dict:
    """The feature definition of the anb surrogate (checked against the shipped meta)."""
    sp = get_space("anb")
    cols = [f"{d.name}={c}" for d in sp.decisions for c in d.choices]
    return {"name": "anb-onehot-v1", "space": "anb", "encoding": "SearchSpace.onehot",
            "width": len(cols), "columns": cols}


def anb_features(idx: np.ndarray) -> np.ndarray:
    """Features of an ``(n, 28)`` array of anb index vectors (the one-hot encoding)."""
    return get_space("anb").onehot(idx)


def load_anb_csv(csv_path: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray, Path]:
    """Index vectors ``(n, 28)``, ``val_top1`` as fractions ``(n,)`` and the resolved path."""
    path = resolve_benchmark_file(csv_path, ANB_SUBDIR, ANB_FILE, "Accel-NASBench CSV")
    sp = get_space("anb")
    idx, acc = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = [d.name for d in sp.decisions] + ["val_top1"]
        lacking = [c for c in need if c not in (reader.fieldnames or [])]
        if lacking:
            raise ValueError(f"{path}: not an Accel-NASBench results file (lacks columns "
                             f"{', '.join(lacking[:5])})")
        for line_no, row in enumerate(reader, start=2):
            try:
                idx.append(sp.from_row(row))
                acc.append(float(row["val_top1"]) / 100.0)
            except ValueError as exc:
                raise ValueError(f"{path} line {line_no}: {exc}") from None
    if not idx:
        raise ValueError(f"{path}: no rows")
    y = np.array(acc, dtype=np.float64)
    if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
        raise ValueError(f"{path}: val_top1 must be percentages in [0, 100]")
    return np.array(idx, dtype=np.int64), y, path


def anb_split(idx: np.ndarray, seed: int,
              fractions: Sequence[float] = ANB_SPLIT_FRACTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/val/test row indices (80/10/10 by default) from an explicit seed.

    The split is over unique architectures, so the benchmark's few duplicate rows
    (13 of 5,138) never straddle two parts.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    _, group = np.unique(np.asarray(idx), axis=0, return_inverse=True)
    group = group.ravel()
    n_groups = int(group.max()) + 1
    perm = np.random.default_rng(seed).permutation(n_groups)
    c1 = int(round(fractions[0] * n_groups))
    c2 = int(round((fractions[0] + fractions[1]) * n_groups))
    part = np.empty(n_groups, dtype=np.int64)
    part[perm[:c1]], part[perm[c1:c2]], part[perm[c2:]] = 0, 1, 2
    rows = part[group]
    return tuple(np.flatnonzero(rows == k) for k in range(3))  # type: ignore[return-value]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Kendall tau, Spearman rho, R^2 and mean absolute error (accuracy points)."""
    from scipy.stats import kendalltau, spearmanr

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {"kendall_tau": float(kendalltau(y_true, y_pred)[0]),
            "spearman": float(spearmanr(y_true, y_pred)[0]),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "mae_points": float(np.mean(np.abs(y_true - y_pred)) * 100), "n": int(y_true.size)}


def _library_versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("xgboost", "scipy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except ImportError:  # pragma: no cover
            out[mod] = None
    return out


def train_anb_xgb(x: np.ndarray, y: np.ndarray, params: dict | None = None, seed: int = 0,
                  n_jobs: int = 1):
    """Fit an XGBoost regressor (``ANB_XGB_PARAMS`` unless ``params``); returns the model."""
    import xgboost as xgb

    p = dict(ANB_XGB_PARAMS if params is None else params)
    model = xgb.XGBRegressor(random_state=seed, n_jobs=n_jobs, **p)
    model.fit(x, y)
    return model


def fit_anb_accuracy(csv_path: str | os.PathLike | None, out_dir: str | os.PathLike,
                     seed: int = ANB_DEFAULT_SEED, params: dict | None = None,
                     n_jobs: int = 1) -> dict:
    """Fit the anb surrogate on the train part of the seed's 80/10/10 split and write
    ``anb_accuracy.json`` (XGBoost JSON) and ``anb_accuracy.meta.json`` into ``out_dir``.

    Returns the metadata (metrics on the validation and test parts included).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    idx, y, path = load_anb_csv(csv_path)
    tr, va, te = anb_split(idx, int(seed))
    x = anb_features(idx)
    p = dict(ANB_XGB_PARAMS if params is None else params)
    t0 = time.perf_counter()
    model = train_anb_xgb(x[tr], y[tr], p, seed=int(seed), n_jobs=n_jobs)
    fit_s = time.perf_counter() - t0
    booster = model.get_booster()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / ANB_MODEL_NAME
    booster.save_model(str(model_path))
    pred = np.clip(model.predict(x), 0.0, 1.0)
    meta = {
        "format": META_FORMAT,
        "objective": "anb",
        "description": "Accuracy surrogate for the Accel-NASBench space, fitted by mnas-surrogate",
        "target": "val_top1 / 100: ImageNet top-1 (fraction) after Accel-NASBench's 16-epoch "
                  "proxy training at 160-192 px",
        "data": {"file": path.name, "sha256": _sha256(path), "rows": int(len(y)),
                 "unique_architectures": int(len(np.unique(idx, axis=0))),
                 "source": "Accel-NASBench (Ahmad et al., 2024)", "license": "Apache-2.0"},
        "split": {"seed": int(seed), "fractions": list(ANB_SPLIT_FRACTIONS),
                  "method": "random over unique architectures (duplicate rows kept together); "
                            "search.accuracy.anb_split",
                  "n_train": int(tr.size), "n_val": int(va.size), "n_test": int(te.size),
                  "fitted_on": "train"},
        "features": anb_feature_spec(),
        "model": {"library": "xgboost", "class": "XGBRegressor", "params": p,
                  "random_state": int(seed), "file": ANB_MODEL_NAME,
                  "sha256": _sha256(model_path), "output": "clipped to [0, 1]"},
        "metrics": {"train": regression_metrics(y[tr], pred[tr]),
                    "val": regression_metrics(y[va], pred[va]),
                    "test": regression_metrics(y[te], pred[te])},
        "anchor": {**ANB_ANCHOR, "source": "Accel-NASBench's XGBoost surrogate, random 80/10/10"},
        "fit_seconds": round(fit_s, 3),
        "versions": _library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    (out / ANB_META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def load_anb_meta(model_path: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """The model path and its metadata (the shipped artifact unless ``model_path``)."""
    mp = Path(model_path).expanduser() if model_path else package_data_dir() / ANB_MODEL_NAME
    if not mp.is_file():
        raise FileNotFoundError(f"anb surrogate model {mp} does not exist (re-create it with "
                                f"bench/anb_accuracy_surrogate.py --write-artifact)")
    meta_path = mp.with_name(mp.name[:-len(".json")] + ".meta.json") if mp.name.endswith(".json") \
        else mp.with_name(mp.name + ".meta.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"anb surrogate metadata {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"anb surrogate metadata {meta_path} is not valid JSON: {exc}") from None
    return mp, meta


class AnbAccuracy(AccuracyObjective):
    """Accel-NASBench ImageNet top-1 (16-epoch proxy) predicted by the shipped surrogate."""

    name = "anb"
    space_name = "anb"

    def __init__(self, model_path: str | os.PathLike | None = None,
                 cache_path: str | os.PathLike | None = None, *, verify: bool = True) -> None:
        mp, meta = load_anb_meta(model_path)
        spec = anb_feature_spec()
        if meta.get("features") != spec:
            got = (meta.get("features") or {}).get("name")
            raise ValueError(f"anb surrogate {mp}: its feature definition ({got!r}) does not match "
                             f"this code's ({spec['name']!r}, width {spec['width']}); refit it with "
                             f"bench/anb_accuracy_surrogate.py --write-artifact")
        digest = _sha256(mp)
        if verify and meta.get("model", {}).get("sha256") not in (None, digest):
            raise ValueError(f"anb surrogate {mp}: sha256 differs from its metadata; the model "
                             f"and {ANB_META_NAME} do not belong together")
        self.model_path = mp
        self.meta = meta
        self._digest = digest
        import xgboost as xgb

        self._booster = xgb.Booster(model_file=str(mp))
        self._booster.set_param({"nthread": 1})
        n_feat = self._booster.num_features()
        if n_feat != spec["width"]:
            raise ValueError(f"anb surrogate {mp}: the model takes {n_feat} features, the code "
                             f"makes {spec['width']}")
        super().__init__(cache_path)

    @property
    def fingerprint(self) -> str:
        """Identity of the surrogate file (part of the cache key)."""
        return "xgb-" + self._digest[:16]

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        pred = self._booster.inplace_predict(anb_features(idx))
        return np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)


# -- NAS-Bench-Macro lookup ----------------------------------------------------------------------
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
        self._digest = _sha256(self.json_path)
        sp = get_space(self.space_name)
        try:
            raw = json.loads(self.json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.json_path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f"{self.json_path}: expected a non-empty object of key -> record")
        classes: dict[tuple[int, ...], list[tuple[str, dict]]] = {}
        for key, rec in raw.items():
            try:
                canon = sp.canonical(sp.from_key(key))
                float(rec["mean_acc"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.json_path}: entry {key!r} is not a NAS-Bench-Macro "
                                 f"record (8-digit key with a mean_acc)") from None
            classes.setdefault(canon, []).append((key, rec))
        self._acc: dict[tuple[int, ...], float] = {}
        self._records: dict[tuple[int, ...], dict] = {}
        spread = 0.0
        for canon, members in classes.items():
            accs = np.array([float(r["mean_acc"]) for _, r in members])
            if not np.isfinite(accs).all() or (accs < 0).any() or (accs > 100).any():
                raise ValueError(f"{self.json_path}: mean_acc of {members[0][0]!r} is not a "
                                 f"percentage")
            spread = max(spread, float(accs.max() - accs.min()) / 100.0)
            self._acc[canon] = float(accs.mean()) / 100.0
            own = dict(members)
            ck = sp.to_key(canon)
            rec = own.get(ck, members[0][1])
            self._records[canon] = {"key": ck, "keys": sorted(k for k, _ in members),
                                    "accuracy": self._acc[canon],
                                    "std": float(rec.get("std", float("nan"))) / 100.0,
                                    "params": int(rec.get("params", -1)),
                                    "flops": int(rec.get("flops", -1))}
        #: largest accuracy difference (fraction) between equivalent keys in the file
        self.max_equivalent_spread = spread
        self.n_keys = len(raw)
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


# -- registry ------------------------------------------------------------------------------------
def _proxy_train(**kw: Any) -> AccuracyObjective:
    """Placeholder: real short training lives in ``search.train.proxy`` (loaded on demand)."""
    if kw.get("data") is None:
        raise ValueError("accuracy 'proxy-train' needs --data (the training data set) and is "
                         "provided by search.train.proxy")
    try:
        mod = importlib.import_module("search.train.proxy")
    except ModuleNotFoundError as exc:
        if exc.name not in ("search.train", "search.train.proxy"):
            raise
        raise ValueError("accuracy 'proxy-train' is provided by search.train.proxy, which is not "
                         "available in this installation") from None
    factory = _REGISTRY.get("proxy-train")
    if factory is _proxy_train:  # the module did not register itself
        factory = getattr(mod, "ProxyTrainAccuracy", None)
    if factory is None or factory is _proxy_train:
        raise ValueError("accuracy 'proxy-train': search.train.proxy provides no objective "
                         "(expected register_accuracy('proxy-train', ...) or ProxyTrainAccuracy)")
    return factory(**kw)


def _anb(data: Any = None, model_path: str | os.PathLike | None = None,
         cache_path: str | os.PathLike | None = None, verify: bool = True) -> AnbAccuracy:
    # `data` is accepted for a uniform CLI; the shipped surrogate does not read it
    return AnbAccuracy(model_path, cache_path, verify=verify)


def _macro(data: Any = None, json_path: str | os.PathLike | None = None,
           cache_path: str | os.PathLike | None = None) -> MacroAccuracy:
    return MacroAccuracy(json_path if json_path is not None else data, cache_path)


_REGISTRY: dict[str, Callable[..., AccuracyObjective]] = {
    "anb": _anb,
    "macro": _macro,
    "proxy-train": _proxy_train,
}


def accuracy_names() -> list[str]:
    """Names accepted by :func:`get_accuracy`."""
    return list(_REGISTRY)


def register_accuracy(name: str, factory: Callable[..., AccuracyObjective]) -> None:
    """Register (or replace) an accuracy objective factory under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"accuracy name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable")
    _REGISTRY[name] = factory


def get_accuracy(name: str, **kw: Any) -> AccuracyObjective:
    """An accuracy objective by name: ``'anb'`` (model_path, cache_path), ``'macro'``
    (json_path or data, cache_path), ``'proxy-train'`` (data, ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown accuracy {name!r}; expected one of {', '.join(_REGISTRY)}")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(**kw)
    except TypeError as exc:
        raise ValueError(f"accuracy {name!r}: {exc}") from None
    except ValueError:  # pragma: no cover - callables without a signature
        pass
    return factory(**kw)


__all__ = [
    "ANB_ANCHOR", "ANB_XGB_PARAMS", "AccuracyObjective", "AnbAccuracy", "MacroAccuracy",
    "accuracy_names", "anb_feature_spec", "anb_features", "anb_split", "fit_anb_accuracy",
    "get_accuracy", "load_anb_csv", "load_anb_meta", "package_data_dir", "register_accuracy",
    "regression_metrics", "resolve_benchmark_file",
]
