"""Search spaces: shared interface, encodings, canonical forms, ground-truth counts."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from space import count, get_reference, get_space, space_names

SPACES = space_names()


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sample_encode_decode_identity(name, seed):
    sp = get_space(name)
    rng = np.random.default_rng(seed)
    idx = sp.sample_indices(rng, 4)
    for row in idx:
        a = sp.to_arch(row)
        back = sp.from_arch(a)
        assert back == tuple(row)
        assert sp.to_arch(back) == a
    assert (sp.from_onehot(sp.onehot(idx)) == idx).all()
    assert (sp.from_ordinal(sp.ordinal(idx)) == idx).all()
    oh = sp.onehot(idx)
    assert oh.shape == (4, sp.onehot_width) and (oh.sum(axis=1) == sp.n_decisions).all()


@pytest.mark.parametrize("name", SPACES)
def test_canonical_idempotent_and_mutate_changes_network(name):
    sp = get_space(name)
    rng = np.random.default_rng(1)
    raw = np.stack([rng.integers(0, d.n, size=50) for d in sp.decisions], axis=1)
    for row in raw:
        c = sp.canonical(row)
        assert sp.canonical(c) == c
        assert sp.to_arch(row) == sp.to_arch(c)
        m = sp.mutate(c, rng)
        assert sp.to_arch(m) != sp.to_arch(c)


@pytest.mark.parametrize("name", SPACES)
def test_operator_configs_cover_sampled_networks(name):
    sp = get_space(name)
    keys = {op.key() for op in sp.operator_configs()}
    rng = np.random.default_rng(2)
    for _ in range(30):
        a = sp.sample(rng)
        for op in a.ops():
            if not op.is_identity:
                assert op.key() in keys, op.key()


@pytest.mark.parametrize("name", SPACES)
def test_bad_indices_are_named(name):
    sp = get_space(name)
    with pytest.raises(ValueError, match="decisions"):
        sp.to_arch([0])
    bad = [0] * sp.n_decisions
    bad[0] = sp.decisions[0].n
    with pytest.raises(ValueError, match=sp.decisions[0].name):
        sp.to_arch(bad)


def test_mnasnet_space_contains_a1_and_b1_not_paper_grid():
    ext, paper = get_space("mnasnet"), get_space("mnasnet-paper")
    for name in ("mnasnet-a1", "mnasnet-b1"):
        ref = get_reference(name)
        a = ext.to_arch(ext.from_arch(ref))
        assert count(a) == count(ref)
        with pytest.raises(ValueError, match="not in space 'mnasnet-paper'"):
            paper.from_arch(ref)
    assert paper.decisions[4 * 6 + 4].choices == (72, 96, 120)
    assert ext.decisions[4 * 6 + 4].choices == (72, 96, 112, 120)
    # ~432 sub-spaces per block (op x kernel x se x skip x width x layers)
    assert all(np.prod([d.n for d in pos]) == 432 for pos in paper.positions)


def test_nasbench_macro_canonical_count():
    sp = get_space("nasbench-macro")
    assert sp.size == 6561
    assert len(set(sp.enumerate())) == 3969


def test_nasbench_macro_counts_every_key(macro_json):
    sp = get_space("nasbench-macro")
    data = json.loads(macro_json.read_text())
    assert len(data) == 6561
    for key, v in data.items():
        c = count(sp.to_arch(sp.from_key(key)))
        assert (c.params, c.madds) == (v["params"], v["flops"]), key
    # an identity inside a stage moves to its end
    assert sp.canonical(sp.from_key("12001020")) == sp.from_key("12010020")
    assert data["12001020"]["params"] == data["12010020"]["params"]


def test_anb_counts_every_row_exactly(anb_csv):
    sp = get_space("anb")
    with anb_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5138
    for r in rows:
        c = count(sp.row_arch(r))
        assert c.params == round(float(r["params_m"]) * 1e6), r["result_id"]
        assert abs(c.macs_thop - float(r["macs_m"]) * 1e6) < 0.5, r["result_id"]


def test_anb_row_errors():
    sp = get_space("anb")
    with pytest.raises(ValueError, match="block0_e"):
        sp.from_row({})
    row = {d.name: d.choices[0] for d in sp.decisions}
    row["block2_k"] = 7
    with pytest.raises(ValueError, match="block2_k"):
        sp.from_row(row)


def test_efficientnet_b0_is_an_anb_member():
    sp = get_space("anb")
    a = sp.to_arch(sp.from_arch(get_reference("efficientnet-b0")))
    assert count(a).params == 5_288_548


def test_fbnet_rows_parse(fbnet_csv):
    sp = get_space("fbnet")
    with fbnet_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5000
    for r in rows[:500]:
        idx = sp.from_ops([r[f"layer{i}"] for i in range(22)])
        a = sp.to_arch(idx)
        assert a.resolution == 32 and a.num_classes == 100 and len(a.layers()) == 22
    with pytest.raises(ValueError, match="layer3 op 'k7_e1'"):
        sp.from_ops(["skip"] * 3 + ["k7_e1"] + ["skip"] * 18)


def test_fbnet_grouped_layers_build():
    torch = pytest.importorskip("torch")
    from space.build import build_model

    sp = get_space("fbnet")
    a = sp.to_arch([1] * 22)  # k3_e1_g2 everywhere
    m = build_model(a)
    assert sum(p.numel() for p in m.parameters()) == count(a).params
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 100)
