"""Predict-only device profiles: predictors fitted on public benchmark latencies.

The measuring profiles (:mod:`surrogate.measure.profiles`) time networks on this
machine. The devices here exist only as someone else's published timings. Each
gets one predictor, fitted by :func:`fit_published` and shipped under
``surrogate/data/predictors/<device>/<space>/`` (``bench/zoo_predictors.py``
regenerates them). ``meta.json`` records the data's license and provenance: the
source file's sha256, the fit date, the model and its held-out figures.

- HELP FBNet (MIT): ``pixel2``, ``samsung_a50``, ``pixel3``, ``raspi4``, ``gold_6226``,
  ``2080ti_1``, ``2080ti_32``, ``titanx_1`` (the CSV's column stems), space ``fbnet``;
- Accel-NASBench (Apache-2.0): ``a100``, ``3090``, ``tpuv2``, ``tpuv3`` (ms per image
  from throughput), space ``anb``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .metrics import latency_metrics

HELP_SOURCE = "HELP (Lee et al., NeurIPS 2021), help_fbnet/fbnet_latency.csv"
ANB_SOURCE = "Accel-NASBench (Ahmad et al., 2024), accel_nasbench/anb_results.csv"


@dataclass(frozen=True)
class PublishedDevice:
    """A device known only from published timings: its space, dataset, license and what it is."""

    name: str
    space: str
    dataset: str
    license: str
    description: str

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)


def _help(name: str, what: str) -> PublishedDevice:
    return PublishedDevice(name, "fbnet", "help_fbnet", "MIT", f"{what} (HELP FBNet latencies)")


def _anb(name: str, what: str) -> PublishedDevice:
    return PublishedDevice(name, "anb", "accel_nasbench", "Apache-2.0",
                           f"{what} (Accel-NASBench throughput as ms per image)")


#: the predict-only registry, by name
PUBLISHED: dict[str, PublishedDevice] = {d.name: d for d in (
    _help("pixel2", "Google Pixel 2 phone, end-to-end, whole ms"),
    _help("samsung_a50", "Samsung Galaxy A50 phone, end-to-end, whole ms"),
    _help("pixel3", "Google Pixel 3 phone"),
    _help("raspi4", "Raspberry Pi 4"),
    _help("gold_6226", "Intel Xeon Gold 6226 server CPU"),
    _help("2080ti_1", "NVIDIA RTX 2080 Ti GPU, batch 1"),
    _help("2080ti_32", "NVIDIA RTX 2080 Ti GPU, batch 32"),
    _help("titanx_1", "NVIDIA Titan X GPU, batch 1"),
    _anb("a100", "NVIDIA A100 GPU"),
    _anb("3090", "NVIDIA RTX 3090 GPU"),
    _anb("tpuv2", "Google TPUv2"),
    _anb("tpuv3", "Google TPUv3"),
)}


def published_names() -> list[str]:
    """Names of the predict-only devices."""
    return list(PUBLISHED)


def get_published(name: str) -> PublishedDevice:
    """The predict-only device ``name``; ValueError listing them otherwise."""
    try:
        return PUBLISHED[name]
    except KeyError:
        raise ValueError(f"unknown predict-only device {name!r}; expected one of "
                         f"{', '.join(PUBLISHED)}") from None


def load_published(dataset: str, data: str | os.PathLike | None = None):
    """The :class:`~surrogate.datasets.LatencyDataset` behind a dataset name."""
    from ..datasets import load_anb, load_help_fbnet

    if dataset == "help_fbnet":
        return load_help_fbnet(data)
    if dataset == "accel_nasbench":
        return load_anb(data)
    raise ValueError(f"unknown dataset {dataset!r}")


def zoo_candidates(space: str) -> dict:
    """The small-file candidates of a shipped profile: ``additive`` (ms), ``ridge`` and
    ``huber`` (log ms) on the encoding and counts; all keep their state in JSON."""
    from .baselines import Additive
    from .estimators import LatencyModel

    ec = ("encoding", "counts")
    return {"additive": lambda s: Additive(space),
            "ridge": lambda s: LatencyModel(space, model="ridge", parts=ec, random_state=s),
            "huber": lambda s: LatencyModel(space, model="huber", parts=ec, random_state=s)}


def fit_published(name: str, data: str | os.PathLike | None = None, *, seed: int = 0,
                  test_share: float = 0.2, ds=None):
    """(predictor fitted on every row, meta) for predict-only device ``name``.

    The model is chosen among :func:`zoo_candidates` by validation MAPE inside the
    training rows (80%). The chosen model's figures on the held-out ``test_share`` are
    recorded as ``validation`` in ``meta``. The shipped model is then refitted on every
    row. ``ds``: the dataset when already loaded.
    """
    from ..tables import file_sha256, now_iso
    from .selection import select_and_fit, validation_split

    dev = get_published(name)
    ds = ds if ds is not None else load_published(dev.dataset, data)
    X, y = ds.canonical, ds.latency_ms(name)
    tr, te = validation_split(len(y), val_share=test_share, seed=seed)
    cands = zoo_candidates(dev.space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select_and_fit(cands, X[tr], y[tr], seed=seed, refit="all")
        held = {k: latency_metrics(y[te], m.predict(X[te])) for k, m in sel.fitted.items()}
        est = cands[sel.chosen](seed).fit(X, y)
    meta = {"predict_only": True, "device": dev.as_dict(), "license": dev.license,
            "provenance": {"dataset": dev.dataset,
                           "source": HELP_SOURCE if dev.dataset == "help_fbnet" else ANB_SOURCE,
                           "file": Path(ds.path).name, "sha256": file_sha256(ds.path),
                           "rows": int(len(y)), "column": f"{name}_ms",
                           "fitted": now_iso()[:10]},
            "model": sel.chosen,
            "validation": {"held_out_rows": int(len(te)), "train_rows": int(len(tr)),
                           "split_seed": seed, "chosen": held[sel.chosen], "candidates": held},
            "shipped_fit_rows": int(len(y))}
    return est, meta


def write_published(name: str, data: str | os.PathLike | None = None, *,
                    root: str | os.PathLike | None = None, seed: int = 0, ds=None) -> Path:
    """Fit and save device ``name``'s predictor under ``root/<name>/<space>/``
    (default: the shipped ``surrogate/data/predictors``); returns the folder."""
    from ..paths import SHIPPED_PREDICTORS_DIR as SHIPPED_DIR
    from .persist import save_predictor

    est, meta = fit_published(name, data, seed=seed, ds=ds)
    dev = get_published(name)
    out = Path(root) if root is not None else SHIPPED_DIR
    return save_predictor(est, out / name / dev.space, profile=name, extra={"zoo": meta})


def published_summary(name: str, root: str | os.PathLike | None = None) -> dict:
    """The shipped profile's device, model and validation figures (from its meta.json)."""
    import json

    from ..paths import SHIPPED_PREDICTORS_DIR as SHIPPED_DIR

    dev = get_published(name)
    mp = (Path(root) if root is not None else SHIPPED_DIR) / name / dev.space / "meta.json"
    if not mp.is_file():
        return {**dev.as_dict(), "shipped": False}
    zoo = json.loads(mp.read_text()).get("zoo", {})
    val = zoo.get("validation", {}).get("chosen", {})
    return {**dev.as_dict(), "shipped": True, "model": zoo.get("model"),
            "spearman": val.get("spearman"), "mape": val.get("mape"),
            "sha256": zoo.get("provenance", {}).get("sha256")}


__all__ = ["PUBLISHED", "PublishedDevice", "fit_published", "get_published", "load_published",
           "published_names", "published_summary", "write_published", "zoo_candidates"]
