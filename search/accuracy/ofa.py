"""Once-for-All's published ImageNet accuracy predictor as the accuracy objective ``ofa``.

The predictor is an MLP over a one-hot encoding of an OFA-MobileNetV3 sub-network
(mit-han-lab/once-for-all, Cai et al. ICLR'20). The project does not ship its weights:
the user gives the file (``--accuracy-file``, or ``--data``, or ``ofa/acc_predictor.pth``
under ``$MNAS_BENCHMARKS_DIR``), read with ``weights_only=True`` through
:func:`surrogate.tensorfile.load_tensors`. Two state-dict layouts are read:

``tutorial`` -- the published file ``ofa/acc_predictor.pth`` of ``han-cai/files``
    (downloaded by ``ofa/tutorial/accuracy_predictor.py``, commit 80a2e26e and the
    revision that points at raw.githubusercontent.com/han-cai/files; the tutorial
    ``tutorial/ofa.ipynb`` prints the model and uses it with
    ``ofa_mbv3_d234_e346_k357_w1.2``, hence this objective's space ``ofa-mbv3-w1.2``).
    ``nn.Sequential(Linear(128, 400), ReLU, Linear(400, 400), ReLU, Linear(400, 400),
    ReLU, Linear(400, 1))``: keys ``0.*, 2.*, 4.*, 6.*``. ``spec2feats(ks, e, d, r)``:
    the ks/e of layers beyond a stage's depth are zeroed, then 60 kernel one-hots
    (layer ``i`` at ``3 i + {3: 0, 5: 1, 7: 2}[k]``), 60 expansion one-hots
    (``3 i + {3: 0, 4: 1, 6: 2}[e]``; the maps are ``construct_maps``'s, whose
    ``list(set(keys))`` order is ascending for these small ints in CPython) and 8
    resolution one-hots at ``(r - 112) // 16``; inactive layers are all zeros. The
    output is the accuracy as a fraction (the notebook prints ``acc * 100``).
``encoder`` -- ``ofa/nas/accuracy_predictor/acc_predictor.py`` ``AccuracyPredictor``
    (80a2e26e): ``layers.{0,1,2}.0`` Linear(in, 400) / Linear(400, 400) + ReLU,
    ``layers.3`` Linear(400, 1, bias=False), output ``layers(x).squeeze() + base_acc``;
    features from ``arch_encoder.py`` ``MobileNetArchEncoder.arch2feature`` (mbv3:
    ``n_stage = 5``, 20 blocks): first ``len(image_size_list)`` resolution one-hots, then
    per block 3 kernel one-hots over ``ks_list = [3, 5, 7]``, then per block 3 expansion
    one-hots over ``expand_list = [3, 4, 6]``; block ``i`` counts when
    ``i % 4 < d[i // 4]``. The state dict does not record ``image_size_list``: it is
    ``image_sizes`` when given, else the space's 25 training sizes (128..224 step 4)
    when the input width is 120 + 25, else the encoder's default ``[224]`` at 120 + 1.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from space.spaces.ofa import EXPANDS, KERNELS, MAX_DEPTH, N_STAGES
from surrogate.tables import file_sha256

from .base import ENV_BENCHMARKS, AccuracyObjective, resolve_benchmark_file

OFA_SUBDIR, OFA_FILE = "ofa", "acc_predictor.pth"
OFA_SOURCE = ("https://raw.githubusercontent.com/han-cai/files/master/ofa/acc_predictor.pth "
              "(mit-han-lab/once-for-all ofa/tutorial/accuracy_predictor.py)")
HIDDEN = 400
N_BLOCKS = N_STAGES * MAX_DEPTH                  # 20
KS_MAP = {3: 0, 5: 1, 7: 2}                      # construct_maps((3, 5, 7))
EX_MAP = {3: 0, 4: 1, 6: 2}                      # construct_maps((3, 4, 6))
TUTORIAL_IN = 3 * N_BLOCKS * 2 + 8               # 128
SPACES = ("ofa-mbv3-w1.2", "ofa-mbv3")


def tutorial_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the tutorial MLP (the published ``acc_predictor.pth``)."""
    return {"0.weight": (HIDDEN, TUTORIAL_IN), "0.bias": (HIDDEN,),
            "2.weight": (HIDDEN, HIDDEN), "2.bias": (HIDDEN,),
            "4.weight": (HIDDEN, HIDDEN), "4.bias": (HIDDEN,),
            "6.weight": (1, HIDDEN), "6.bias": (1,)}


def encoder_layout(n_in: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``ofa.nas.accuracy_predictor.AccuracyPredictor(enc, 400, 3)``."""
    return {"layers.0.0.weight": (HIDDEN, n_in), "layers.0.0.bias": (HIDDEN,),
            "layers.1.0.weight": (HIDDEN, HIDDEN), "layers.1.0.bias": (HIDDEN,),
            "layers.2.0.weight": (HIDDEN, HIDDEN), "layers.2.0.bias": (HIDDEN,),
            "layers.3.weight": (1, HIDDEN), "base_acc": (1,)}


def _describe(layout: Mapping[str, tuple[int, ...]]) -> str:
    return ", ".join(f"{k} {v}" for k, v in layout.items())


def tutorial_features(cfg: Mapping[str, Any]) -> np.ndarray:
    """``AccuracyPredictor.spec2feats`` of the tutorial: 128 floats for one OFA dict."""
    ks, e, d, r = list(cfg["ks"]), list(cfg["e"]), list(cfg["d"]), int(cfg["image_size"])
    if not 112 <= r < 112 + 16 * 8:
        raise ValueError(f"ofa: resolution {r} has no slot in the tutorial encoding "
                         f"((r - 112) // 16 in 0..7: 112..239)")
    x = np.zeros(TUTORIAL_IN)
    for i in range(N_BLOCKS):
        if i % MAX_DEPTH < d[i // MAX_DEPTH]:
            x[3 * i + KS_MAP[ks[i]]] = 1.0
            x[3 * N_BLOCKS + 3 * i + EX_MAP[e[i]]] = 1.0
    x[6 * N_BLOCKS + (r - 112) // 16] = 1.0
    return x


def encoder_features(cfg: Mapping[str, Any], image_sizes: Sequence[int]) -> np.ndarray:
    """``MobileNetArchEncoder.arch2feature`` (mbv3, ks [3,5,7], expand [3,4,6], depth [2,3,4])."""
    sizes = list(image_sizes)
    r = int(cfg["image_size"])
    if r not in sizes:
        raise ValueError(f"ofa: resolution {r} is not one of the predictor's image sizes "
                         f"{sizes}")
    n_r = len(sizes)
    x = np.zeros(n_r + 6 * N_BLOCKS)
    for i in range(N_BLOCKS):
        if i % MAX_DEPTH < cfg["d"][i // MAX_DEPTH]:
            x[n_r + 3 * i + KERNELS.index(cfg["ks"][i])] = 1.0
            x[n_r + 3 * N_BLOCKS + 3 * i + EXPANDS.index(cfg["e"][i])] = 1.0
    x[sizes.index(r)] = 1.0
    return x


class OFAAccuracy(AccuracyObjective):
    """OFA's accuracy predictor (ImageNet top-1 on OFA's 10k holdout images, a fraction)."""

    name = "ofa"
    space_name = "ofa-mbv3-w1.2"

    def __init__(self, path: str | os.PathLike | None = None,
                 cache_path: str | os.PathLike | None = None,
                 image_sizes: Sequence[int] | None = None, space: str = "ofa-mbv3-w1.2") -> None:
        if space not in SPACES:
            raise ValueError(f"accuracy 'ofa' scores the OFA-MobileNetV3 spaces "
                             f"{', '.join(SPACES)}; got {space!r}")
        self.space_name = space
        if (path is None or str(path) == "") and not os.environ.get(ENV_BENCHMARKS):
            raise ValueError(f"accuracy 'ofa' needs OFA's predictor file ({OFA_SOURCE}): "
                             f"--accuracy-file FILE (or --data FILE / a folder holding "
                             f"{OFA_SUBDIR}/{OFA_FILE}, or ${ENV_BENCHMARKS})")
        self.path = resolve_benchmark_file(path, OFA_SUBDIR, OFA_FILE, "OFA accuracy predictor")
        from surrogate.tensorfile import load_tensors

        sd = load_tensors(self.path, what="OFA accuracy predictor")
        if isinstance(sd, Mapping) and "state_dict" in sd:  # as AccuracyPredictor accepts it
            sd = sd["state_dict"]
        self.layout, self.image_sizes, self._w = _read_state(sd, self.path, image_sizes)
        self._digest = file_sha256(self.path)
        super().__init__(cache_path)

    @property
    def fingerprint(self) -> str:
        """Layout and file identity (part of the cache key)."""
        return f"{self.layout}-{self._digest[:16]}"

    def features(self, idx: np.ndarray) -> np.ndarray:
        """OFA's encoding of canonical index vectors, shape ``(n, in_features)``."""
        arr = np.asarray(idx, dtype=np.int64).reshape(-1, self.space.n_decisions)
        cfgs = [self.space.to_ofa_config(row) for row in arr]
        if self.layout == "tutorial":
            return np.stack([tutorial_features(c) for c in cfgs]) if cfgs else np.zeros((0, 128))
        return (np.stack([encoder_features(c, self.image_sizes) for c in cfgs]) if cfgs
                else np.zeros((0, self._w[0][0].shape[1])))

    def _evaluate(self, idx: np.ndarray) -> np.ndarray:
        h = self.features(idx)
        (w0, b0), (w1, b1), (w2, b2), (w3, b3) = self._w
        for w, b in ((w0, b0), (w1, b1), (w2, b2)):
            h = np.maximum(h @ w.T + b, 0.0)
        return (h @ w3.T + b3).reshape(-1)


def _read_state(sd: Any, path, image_sizes: Sequence[int] | None):
    """(layout, image sizes, [(W, b)] * 4 as float64 arrays), or a one-line ``ValueError``."""
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) for k in sd):
        raise ValueError(f"OFA accuracy predictor {path}: not a state dict (a mapping of "
                         f"names to tensors); expected {_describe(tutorial_layout())}")
    shapes = {}
    for k, v in sd.items():
        shape = getattr(v, "shape", None)
        shapes[k] = tuple(int(s) for s in shape) if shape is not None else type(v).__name__
    first = shapes.get("layers.0.0.weight")
    n_in = first[1] if isinstance(first, tuple) and len(first) == 2 else 0
    if shapes == tutorial_layout():
        layout, sizes = "tutorial", None
    elif n_in > 6 * N_BLOCKS and shapes == encoder_layout(n_in):
        layout = "encoder"
        n_r = n_in - 6 * N_BLOCKS
        if image_sizes is not None:
            sizes = [int(s) for s in image_sizes]
        elif n_r == 25:
            sizes = list(range(128, 225, 4))
        elif n_r == 1:
            sizes = [224]
        else:
            raise ValueError(f"OFA accuracy predictor {path}: an encoder-layout predictor with "
                             f"{n_r} image sizes; give image_sizes (its image_size_list)")
        if len(sizes) != n_r:
            raise ValueError(f"OFA accuracy predictor {path}: image_sizes has {len(sizes)} "
                             f"sizes, the state dict's first layer takes {n_r}")
    else:
        got = ", ".join(f"{k} {v}" for k, v in list(shapes.items())[:10])
        raise ValueError(f"OFA accuracy predictor {path}: unexpected layout; expected "
                         f"{_describe(tutorial_layout())} (ofa/acc_predictor.pth) or "
                         f"{_describe(encoder_layout(6 * N_BLOCKS + 25))} (ofa.nas "
                         f"AccuracyPredictor, first layer 120 + len(image_size_list) wide); "
                         f"got {got or 'no tensors'}")

    def arr(key):
        a = np.asarray(sd[key].detach().cpu().double().numpy() if hasattr(sd[key], "detach")
                       else sd[key], dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"OFA accuracy predictor {path}: {key} holds non-finite values")
        return a

    if layout == "tutorial":
        w = [(arr(f"{i}.weight"), arr(f"{i}.bias")) for i in (0, 2, 4, 6)]
    else:
        w = [(arr(f"layers.{i}.0.weight"), arr(f"layers.{i}.0.bias")) for i in range(3)]
        w.append((arr("layers.3.weight"), arr("base_acc")))  # base_acc: the output's offset
    return layout, sizes, w


__all__ = ["EX_MAP", "KS_MAP", "OFAAccuracy", "OFA_FILE", "OFA_SOURCE", "OFA_SUBDIR",
           "encoder_features", "encoder_layout", "tutorial_features", "tutorial_layout"]
