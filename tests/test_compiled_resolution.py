"""Per-position tables of spaces whose input resolution is a decision (``ofa-mbv3``).

The checks use a synthetic but exact operator table: :func:`_ms` prices every operator
from its configuration alone, so a table sum must equal the plain sum of ``_ms`` over
``arch.ops()`` to rounding. The real ``cpu-litert`` tables are used when present.
"""
from __future__ import annotations

import itertools
import json
import math
import zlib

import numpy as np
import pytest
import torch

from space.arch import LayerConfig
from space.counting import count
from space.spaces import get_space
from space.spaces.base import Decision
from space.spaces.macro import MacroSpace
from surrogate.predict.compiled import CompiledSpace
from surrogate.predict.differentiable import ExpectedTableLatency
from surrogate.predict.estimators import LatencyModel, TableSum
from surrogate.predict.optable import OpTable
from surrogate.predict.persist import load_predictor, save_predictor
from surrogate.predict.relaxed import relaxed_latency

OFA = ("ofa-mbv3", "ofa-mbv3-w1.2")


def _ms(lc: LayerConfig) -> float:
    """A deterministic operator latency (ms): a cost in the input volume, kernel and output
    width, plus a per-key offset (crc32 of the key) so that no two operators coincide.
    Identity layers cost 0, as in :class:`OpTable`."""
    if lc.is_identity:
        return 0.0
    return (0.01 + 1e-7 * lc.h * lc.w * lc.in_ch * lc.kernel + 1e-5 * (lc.out_ch + lc.mix_ch)
            + 1e-4 * (zlib.crc32(lc.key().encode()) % 97))


def _table(space: str) -> OpTable:
    sp = get_space(space)
    return OpTable({lc.key(): _ms(lc) for lc in sp.operator_configs()}, profile="synthetic",
                   space=space, sha256="0" * 64, source="synthetic")


def _probs(sp, logits: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.softmax(c, dim=1)
                      for c in torch.split(logits, [d.n for d in sp.decisions], 1)], 1)


def _onehot(sp, idx) -> torch.Tensor:
    return torch.as_tensor(sp.onehot(idx), dtype=torch.float64)


def _timings(sp, idx: np.ndarray, cs: CompiledSpace) -> np.ndarray:
    """Synthetic end-to-end latencies: the table sum, a resolution-dependent overhead and
    deterministic noise (a learned model has something to learn beyond the sum)."""
    res = np.array(sp.resolutions)[idx[:, 0]]
    noise = np.random.default_rng(7).normal(0, 0.01, len(idx))
    return cs.table_sum(idx) * (0.8 + 0.4 * (res / 224) ** 2) * np.exp(noise)


# -- the tables are exact ---------------------------------------------------------------------
@pytest.mark.parametrize("name", OFA)
def test_table_sum_is_the_plain_sum_over_ops(name):
    sp = get_space(name)
    assert sp.resolution_decision == 0 and sp.positions[0][0].name == "resolution"
    cs = CompiledSpace.build(sp, _ms)
    assert cs.stem is None and cs.stem_ms == 0.0 and not cs.missing_ops()
    idx = sp.sample_indices(np.random.default_rng(0), 200)
    assert len(set(idx[:, 0])) > 20  # most resolutions drawn
    archs = [sp.to_arch(r) for r in idx]
    plain = np.array([sum(_ms(lc) for lc in a.ops()) for a in archs])
    np.testing.assert_allclose(cs.table_sum(idx), plain, rtol=0, atol=1e-9)
    t = cs.terms(idx)
    counts = [count(a) for a in archs]
    assert np.array_equal(t["total_madds"], [c.madds for c in counts])
    assert np.array_equal(t["total_params"], [c.params for c in counts])
    assert np.array_equal(t["n_layers"].sum(axis=1), [len(a.layers()) for a in archs])
    # without a table, exactly the space's operators are missing
    assert [lc.key() for lc in CompiledSpace.build(sp).missing_ops()] == \
        [lc.key() for lc in sp.operator_configs()]


def test_a_synthetic_table_covers_ofa():
    cs = CompiledSpace.build(get_space("ofa-mbv3"), _table("ofa-mbv3"))
    assert not cs.missing_ops()


class _ResolutionMacro(MacroSpace):
    """NAS-Bench-Macro with the input size as a first decision: a block-wise space whose
    resolution is a decision, handled by the base class alone."""

    name = "macro-resolution"
    resolution_decision = 0
    arch_defaults = {k: v for k, v in MacroSpace.arch_defaults.items() if k != "resolution"}
    positions = ((Decision("resolution", (24, 32, 40)),),) + MacroSpace.positions

    def _make_block(self, pos, sub, in_ch):
        return super()._make_block(pos - 1, sub, in_ch)

    def canonical(self, idx):
        vals = self.check_indices(idx)
        return (vals[0],) + MacroSpace().canonical(vals[1:])


def test_a_block_space_with_a_resolution_decision():
    sp = _ResolutionMacro()
    cs = CompiledSpace.build(sp, _ms)
    idx = sp.sample_indices(np.random.default_rng(1), 100)
    plain = [sum(_ms(lc) for lc in sp.to_arch(r).ops()) for r in idx]
    np.testing.assert_allclose(cs.table_sum(idx), plain, rtol=0, atol=1e-9)
    assert {sp.to_arch(r).resolution for r in idx} == {24, 32, 40}
    assert all(sp.from_arch(sp.to_arch(r)) == tuple(r) for r in idx[:20])
    keys = {lc.key() for lc in sp.operator_configs()}
    assert {lc.key() for r in idx for lc in sp.to_arch(r).ops() if not lc.is_identity} <= keys
    with pytest.raises(ValueError, match="give resolution="):
        sp.position_inputs()
    # the exact expectation, by enumerating all 3 x 6,561 index vectors
    mod = ExpectedTableLatency(cs, dtype=torch.float64)
    rng = np.random.default_rng(5)
    probs = [rng.dirichlet(np.ones(d.n)) for d in sp.decisions]
    allidx = np.array(list(itertools.product(*[range(d.n) for d in sp.decisions])))
    w = np.prod([probs[j][allidx[:, j]] for j in range(sp.n_decisions)], axis=0)
    exact = float((w * cs.table_sum(allidx)).sum())
    got = mod(torch.as_tensor(np.concatenate(probs), dtype=torch.float64)).item()
    assert math.isclose(got, exact, rel_tol=1e-10)


# -- relaxed architectures --------------------------------------------------------------------
def test_expected_latency_is_exact_over_resolution_and_depth():
    sp = get_space("ofa-mbv3")
    cs = CompiledSpace.build(sp, _ms)
    mod = ExpectedTableLatency(cs, dtype=torch.float64)
    idx = sp.sample_indices(np.random.default_rng(2), 50)
    np.testing.assert_allclose(mod(_onehot(sp, idx)).numpy(), cs.table_sum(idx), rtol=1e-12)
    # random over the resolution, stage 1's depth and its last two slots (which the depth
    # may switch off); a fixed member elsewhere: enumerate all 25 * 3 * 9 * 9 choices
    rng = np.random.default_rng(3)
    base = sp.sample_indices(rng, 1)[0]
    free = [0, 1, 6, 7, 8, 9]  # resolution, s1_depth, s1_l3_kernel/expand, s1_l4_kernel/expand
    assert [sp.decisions[j].name for j in free[1:3]] == ["s1_depth", "s1_l3_kernel"]
    probs = [np.eye(d.n)[base[j]] for j, d in enumerate(sp.decisions)]
    for j in free:
        probs[j] = rng.dirichlet(np.ones(sp.decisions[j].n))
    combos = np.array(list(itertools.product(*[range(sp.decisions[j].n) for j in free])))
    allidx = np.tile(base, (len(combos), 1))
    allidx[:, free] = combos
    w = np.prod([probs[j][combos[:, i]] for i, j in enumerate(free)], axis=0)
    canon = np.array([sp.canonical(r) for r in allidx])
    exact = float((w * cs.table_sum(canon)).sum())
    p = torch.as_tensor(np.concatenate(probs), dtype=torch.float64)
    assert math.isclose(mod(p).item(), exact, rel_tol=1e-10)
    # E = sum_r p(r) E[lat | r] with every decision random
    full = [rng.dirichlet(np.ones(d.n)) for d in sp.decisions]
    e = mod(torch.as_tensor(np.concatenate(full), dtype=torch.float64)).item()
    per_r = []
    for r in range(len(sp.resolutions)):
        cond = [np.eye(len(sp.resolutions))[r]] + full[1:]
        per_r.append(mod(torch.as_tensor(np.concatenate(cond), dtype=torch.float64)).item())
    assert math.isclose(e, float(np.dot(full[0], per_r)), rel_tol=1e-10)


def test_gradients_reach_the_resolution_logits():
    sp = get_space("ofa-mbv3")
    mod = ExpectedTableLatency(CompiledSpace.build(sp, _ms), dtype=torch.float64)
    logits = torch.zeros(1, sp.onehot_width, dtype=torch.float64, requires_grad=True)
    mod(_probs(sp, logits)).sum().backward()
    g = logits.grad[0, :len(sp.resolutions)]
    assert torch.isfinite(logits.grad).all() and (g.abs() > 0).all()
    assert g[-1] > 0 > g[0]  # more of 224 px costs, more of 128 px saves
    small = torch.randn(2, sp.onehot_width, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda lg: mod(_probs(sp, lg)), (small,), eps=1e-6, atol=1e-5)


# -- predictors -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ofa_data():
    sp = get_space("ofa-mbv3")
    table = _table("ofa-mbv3")
    idx = sp.sample_indices(np.random.default_rng(11), 400)
    y = _timings(sp, idx, CompiledSpace.build(sp, table))
    return sp, table, idx, y


def test_table_sum_relaxed_equals_predict(ofa_data, tmp_path):
    sp, table, idx, y = ofa_data
    for est in (TableSum("ofa-mbv3", table).fit(),
                TableSum("ofa-mbv3", table, calibrate=True).fit(idx[:300], y[:300])):
        p = est.predict(idx[300:])
        mod, info = relaxed_latency(est)
        assert info["kind"] == "expected-table-sum"
        got = mod(_onehot(sp, idx[300:]).float()).detach().numpy()  # a float32 module
        np.testing.assert_allclose(got, p, rtol=1e-5)
        save_predictor(est, tmp_path / "ts", profile="synthetic")
        again = load_predictor(tmp_path / "ts", space="ofa-mbv3", profile="synthetic")
        np.testing.assert_allclose(again.predict(idx[300:]), p, rtol=1e-12)


@pytest.mark.parametrize("model,params", [("ridge", None), ("xgb", {"n_estimators": 60})])
@pytest.mark.parametrize("residual", [False, True])
def test_learned_models_fit_predict_and_round_trip(ofa_data, tmp_path, model, params, residual):
    sp, table, idx, y = ofa_data
    est = LatencyModel("ofa-mbv3", table, model=model, residual=residual,
                       model_params=params).fit(idx[:300], y[:300])
    names = list(est.features_.feature_names_out_)
    assert names[0] == "resolution=128" and "table_p0" in names and "log_table_sum" in names
    # the features of a member: its resolution one-hot and its own table sum
    f = est.features_.transform(idx[:5])
    np.testing.assert_allclose(f[:, names.index("table_sum")], est.features_.table_sum(idx[:5]))
    p = est.predict(idx[300:])
    mape = float(np.mean(np.abs(p / y[300:] - 1)))
    assert np.isfinite(p).all() and mape < (0.05 if model == "ridge" else 0.15), mape
    # strings and Arch objects give the same predictions as index vectors
    archs = [sp.to_arch(r) for r in idx[300:305]]
    np.testing.assert_allclose(est.predict([str(a) for a in archs]), p[:5], rtol=1e-12)
    save_predictor(est, tmp_path / "m", profile="synthetic")
    again = load_predictor(tmp_path / "m", space="ofa-mbv3", profile="synthetic")
    np.testing.assert_allclose(again.predict(idx[300:]), p, rtol=1e-6)
    if model == "ridge":  # exact differentiable form; gradients reach the resolution
        mod, info = relaxed_latency(est)
        assert info["kind"] == "expected-features"
        np.testing.assert_allclose(mod(_onehot(sp, idx[300:320])).detach().numpy(), p[:20],
                                   rtol=1e-6)
        logits = torch.zeros(1, sp.onehot_width, dtype=torch.float64, requires_grad=True)
        mod(_probs(sp, logits)).sum().backward()
        g = logits.grad[0, :len(sp.resolutions)]
        assert torch.isfinite(logits.grad).all() and g[-1] > 0 > g[0]


# -- fit / eval on tables ---------------------------------------------------------------------
def _write_tables(root, profile: str, space: str, n: int = 250) -> None:
    """``<space>_ops.csv`` (every operator, priced by :func:`_ms`) and ``<space>_models.csv``
    (``n`` random members, :func:`_timings`) under ``root/profile``."""
    from surrogate.tables import OPS_COLUMNS, Table, op_row_key

    sp = get_space(space)
    d = root / profile
    d.mkdir(parents=True)

    def stats(v: float) -> dict:
        return {"median_ms": v, "wall_ms": v, "cpu_ms": v, "clock": "cpu", "estimator": "median",
                "clock_diverged": 0, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v,
                "iqr_ms": 0.0, "cv": 0.0, "rel_spread": 0.0, "n_runs": 10, "n_rounds": 1,
                "remeasured": 0, "ref_ms": 0.5, "measured_at": "2026-01-01T00:00:00+00:00"}

    ops = Table.ops(d / f"{space}_ops.csv")
    ops.append([{**op_row_key(lc), **stats(_ms(lc))} for lc in sp.operator_configs()])
    assert set(OPS_COLUMNS) <= set(ops.read()[0])
    idx = sp.sample_indices(np.random.default_rng(4), n)
    y = _timings(sp, idx, CompiledSpace.build(sp, _ms))
    rows = []
    for r, v in zip(idx, y):
        a = sp.to_arch(r)
        c = count(a)
        rows.append({"arch": str(a), "space": space, "source": "random:seed=4",
                     "params": c.params, "madds": c.madds, **stats(float(v))})
    Table.models(d / f"{space}_models.csv").append(rows)


def test_fit_and_eval_on_tables_end_to_end(tmp_path, capsys):
    from search.cli import main
    from surrogate.predict.workflow import evaluate_on_tables, fit_on_tables

    _write_tables(tmp_path, "cpu-litert", "ofa-mbv3")
    est, info = fit_on_tables("cpu-litert", "ofa-mbv3", "residual-ridge", root=tmp_path)
    assert info["train_rows"] + info["test_rows"] == 250 and info["train_rows"] > 150
    res = evaluate_on_tables("cpu-litert", "ofa-mbv3", est, root=tmp_path)
    assert res["mape"] < 0.05 and res["baselines"]["table_sum"]["mape"] > res["mape"]
    ts, _ = fit_on_tables("cpu-litert", "ofa-mbv3", "table-sum", root=tmp_path)
    assert not ts.features_.missing_ops_
    # the CLI: fit (the default residual XGBoost), then eval with that folder
    out = tmp_path / "pred"
    assert main(["fit", "--profile", "cpu-litert", "--space", "ofa-mbv3", "--tables",
                 str(tmp_path), "-o", str(out), "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["model"] == "residual-xgb" and (out / "model.json").is_file()
    assert main(["eval", "--profile", "cpu-litert", "--space", "ofa-mbv3", "--tables",
                 str(tmp_path), "--predictor", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["predictor"] == "ResidualLatency(xgb)" and ev["mape"] < 0.1, ev["mape"]
    # a pair without tables or a shipped predictor (ofa-mbv3-w1.2): one line saying what to run
    assert main(["eval", "--profile", "cpu-litert", "--space", "ofa-mbv3-w1.2", "--tables",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ofa-mbv3-w1.2" in err and "mnas measure models" in err and len(err.strip().splitlines()) == 1, err


def test_fit_on_the_measured_cpu_litert_tables():
    from surrogate.predict.workflow import evaluate_on_tables, fit_on_tables
    from surrogate.tables import table_path

    if not all(table_path("cpu-litert", "ofa-mbv3", k).is_file() for k in ("ops", "models")):
        pytest.skip("cpu-litert/ofa-mbv3 tables not measured yet")
    ts, _ = fit_on_tables("cpu-litert", "ofa-mbv3", "table-sum")
    assert not ts.features_.missing_ops_, ts.features_.missing_ops_[:3]
    est, info = fit_on_tables("cpu-litert", "ofa-mbv3", "residual-ridge")
    assert info["train_rows"] >= 2
    res = evaluate_on_tables("cpu-litert", "ofa-mbv3", est)
    assert np.isfinite(res["mape"]) and res["kendall_tau"] > 0.5
