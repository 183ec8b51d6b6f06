"""The ``ofa`` accuracy objective: OFA's accuracy-predictor MLP on OFA's encoding.

The tests write state dicts of OFA's layouts with random weights, then compare the
objective with a forward pass of OFA's own modules on OFA's own encoding, both
transcribed here from mit-han-lab/once-for-all (``ofa/tutorial/accuracy_predictor.py``,
``ofa/nas/accuracy_predictor/{acc_predictor,arch_encoder}.py``).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from search.accuracy import OFAAccuracy, accuracy_names, get_accuracy  # noqa: E402
from space import get_reference  # noqa: E402

SUBNET = "note10_lat-30ms_top1-78.4_finetune-75"  # an OFA-MBv3 w1.2 subnet at 224 px
# its OFA dict, written from its blocks; layers beyond a stage's depth hold junk values
SUBNET_CFG = {
    "ks": [3, 3, 7, 5, 5, 3, 3, 7, 5, 5, 3, 5, 3, 3, 3, 7, 3, 3, 3, 3],
    "e": [3, 3, 6, 4, 4, 3, 4, 6, 4, 4, 3, 6, 6, 4, 4, 6, 6, 6, 4, 3],
    "d": [2, 3, 3, 3, 4],
    "r": [224],
}


# -- OFA's code, transcribed ----------------------------------------------------------------
def construct_maps(keys):
    d = dict()
    keys = list(set(keys))
    for k in keys:
        if k not in d:
            d[k] = len(list(d.keys()))
    return d


ks_map = construct_maps(keys=(3, 5, 7))
ex_map = construct_maps(keys=(3, 4, 6))


def spec2feats(ks_list, ex_list, d_list, r):
    start = 0
    end = 4
    for d in d_list:
        for j in range(start + d, end):
            ks_list[j] = 0
            ex_list[j] = 0
        start += 4
        end += 4
    ks_onehot = [0 for _ in range(60)]
    ex_onehot = [0 for _ in range(60)]
    r_onehot = [0 for _ in range(8)]
    for i in range(20):
        start = i * 3
        if ks_list[i] != 0:
            ks_onehot[start + ks_map[ks_list[i]]] = 1
        if ex_list[i] != 0:
            ex_onehot[start + ex_map[ex_list[i]]] = 1
    r_onehot[(r - 112) // 16] = 1
    return torch.Tensor(ks_onehot + ex_onehot + r_onehot)


def tutorial_model():
    return nn.Sequential(nn.Linear(128, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                         nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 1))


def arch2feature(arch_dict, image_size_list, ks_list=(3, 5, 7), expand_list=(3, 4, 6),
                 depth_list=(2, 3, 4)):
    n_dim = 0
    r_val2id = {}
    for img_size in image_size_list:
        r_val2id[img_size] = n_dim
        n_dim += 1
    k_val2id, e_val2id = [], []
    for target, choices in ((k_val2id, ks_list), (e_val2id, expand_list)):
        for i in range(20):
            target.append({})
            for k in choices:
                target[i][k] = n_dim
                n_dim += 1
    ks, e, d, r = arch_dict["ks"], arch_dict["e"], arch_dict["d"], arch_dict["image_size"]
    feature = np.zeros(n_dim)
    for i in range(20):
        nowd = i % max(depth_list)
        stg = i // max(depth_list)
        if nowd < d[stg]:
            feature[k_val2id[i][ks[i]]] = 1
            feature[e_val2id[i][e[i]]] = 1
    feature[r_val2id[r]] = 1
    return feature


class NasAccuracyPredictor(nn.Module):
    """``ofa.nas.accuracy_predictor.AccuracyPredictor`` without the encoder object."""

    def __init__(self, n_dim, hidden_size=400, n_layers=3):
        super().__init__()
        layers = []
        for i in range(n_layers):
            layers.append(nn.Sequential(nn.Linear(n_dim if i == 0 else hidden_size, hidden_size),
                                        nn.ReLU(inplace=True)))
        layers.append(nn.Linear(hidden_size, 1, bias=False))
        self.layers = nn.Sequential(*layers)
        self.base_acc = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x):
        y = self.layers(x).squeeze()
        return y + self.base_acc


# -- fixtures ---------------------------------------------------------------------------------
def _seeded(model, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.requires_grad_(False)


@pytest.fixture()
def tutorial_file(tmp_path):
    model = _seeded(tutorial_model())
    with torch.no_grad():
        model[6].bias.fill_(0.7)  # outputs near 0.7, a fraction as the published file's
    path = tmp_path / "acc_predictor.pth"
    torch.save(model.state_dict(), path)
    return path, model


# -- tests -------------------------------------------------------------------------------------
def test_registered():
    assert "ofa" in accuracy_names()


def test_tutorial_layout_equals_ofa_forward(tutorial_file):
    path, model = tutorial_file
    obj = get_accuracy("ofa", accuracy_file=path)
    assert obj.layout == "tutorial" and obj.space.name == "ofa-mbv3-w1.2"
    a = get_reference(SUBNET)
    cfg = copy.deepcopy(SUBNET_CFG)
    want = float(model(spec2feats(cfg["ks"], cfg["e"], cfg["d"], cfg["r"][0]).reshape(1, -1)))
    assert obj(a) == pytest.approx(want, abs=1e-5)
    # the encoding itself, and the same answer through index vectors and the OFA dict
    feats = obj.features(np.array([obj.indices(a)]))[0]
    cfg = copy.deepcopy(SUBNET_CFG)
    assert (feats == spec2feats(cfg["ks"], cfg["e"], cfg["d"], 224).numpy()).all()
    idx = obj.space.from_ofa_config(SUBNET_CFG)
    assert obj.space.to_arch(idx) == a and obj(idx) == obj(a)
    # every training resolution has its slot; a batch agrees with single calls
    rng = np.random.default_rng(0)
    rows = obj.space.sample_indices(rng, 16)
    got = OFAAccuracy(path).batch(list(rows))
    for row, g in zip(rows, got):
        c = obj.space.to_ofa_config(row)
        x = spec2feats(list(c["ks"]), list(c["e"]), list(c["d"]), c["image_size"])
        assert g == pytest.approx(float(model(x.reshape(1, -1))), abs=1e-5)


def test_encoder_layout_equals_ofa_forward(tmp_path):
    sizes = list(range(128, 225, 4))
    model = _seeded(NasAccuracyPredictor(len(sizes) + 120), seed=1)
    with torch.no_grad():
        model.base_acc.fill_(0.7)
    path = tmp_path / "nas_predictor.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    obj = get_accuracy("ofa", data=str(path))
    assert obj.layout == "encoder" and obj.image_sizes == sizes
    rng = np.random.default_rng(1)
    for row in obj.space.sample_indices(rng, 8):
        c = obj.space.to_ofa_config(row)
        x = torch.tensor(arch2feature(c, sizes)).float().reshape(1, -1)
        assert obj(row) == pytest.approx(float(model(x)), abs=1e-5)
    # the encoder's default image_size_list [224]
    model1 = _seeded(NasAccuracyPredictor(121), seed=2)
    torch.save(model1.state_dict(), tmp_path / "one.pth")
    one = OFAAccuracy(tmp_path / "one.pth")
    a = get_reference(SUBNET)
    x = torch.tensor(arch2feature(dict(SUBNET_CFG, image_size=224), [224])).float()
    assert one(a) == pytest.approx(float(model1(x.reshape(1, -1))), abs=1e-5)
    with pytest.raises(ValueError, match="resolution 128 is not one of the predictor's"):
        one(obj.space.to_arch([0] * obj.space.n_decisions))


def test_wrong_layout_is_refused_in_one_line(tmp_path):
    bad = tutorial_model().state_dict()
    bad["0.weight"] = torch.zeros(400, 127)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(ValueError) as e:
        OFAAccuracy(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "0.weight (400, 128)" in msg and "6.bias (1,)" in msg and "base_acc (1,)" in msg
    assert "0.weight (400, 127)" in msg
    torch.save({"x": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="unexpected layout"):
        OFAAccuracy(path)
    torch.save(NasAccuracyPredictor(128).state_dict(), path)  # 8 image sizes: unknown list
    with pytest.raises(ValueError, match="give image_sizes"):
        OFAAccuracy(path)
    sizes = [128, 144, 160, 176, 192, 208, 224, 240]
    assert OFAAccuracy(path, image_sizes=sizes).image_sizes == sizes


def test_files_and_paths(tmp_path, tutorial_file, monkeypatch):
    monkeypatch.delenv("MNAS_BENCHMARKS_DIR", raising=False)
    with pytest.raises(ValueError, match="--accuracy-file"):
        get_accuracy("ofa")
    with pytest.raises(FileNotFoundError):
        OFAAccuracy(tmp_path / "missing.pth")
    (tmp_path / "pickled.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="pickled.pth"):
        OFAAccuracy(tmp_path / "pickled.pth")
    path, _ = tutorial_file
    # a benchmarks folder holding ofa/acc_predictor.pth
    (tmp_path / "bench" / "ofa").mkdir(parents=True)
    (tmp_path / "bench" / "ofa" / "acc_predictor.pth").write_bytes(path.read_bytes())
    monkeypatch.setenv("MNAS_BENCHMARKS_DIR", str(tmp_path / "bench"))
    obj = get_accuracy("ofa")
    assert obj.fingerprint == OFAAccuracy(path).fingerprint
    with pytest.raises(ValueError, match="scores the OFA-MobileNetV3 spaces"):
        OFAAccuracy(path, space="anb")
    assert OFAAccuracy(path, space="ofa-mbv3").space.name == "ofa-mbv3"


def test_cache_file_round_trip(tmp_path, tutorial_file):
    path, _ = tutorial_file
    cache = tmp_path / "acc.jsonl"
    a = get_reference(SUBNET)
    first = OFAAccuracy(path, cache_path=cache)
    v = first(a)
    again = OFAAccuracy(path, cache_path=cache)
    assert again.cached() == {again.key(a): v} and again(a) == v and again.n_evaluated == 0
