"""Public data set loaders (surrogate.datasets): formats, licenses, paths, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pandas")

from space import get_space  # noqa: E402
from space.spaces.fbnet import OPS  # noqa: E402
from surrogate.datasets import (ENV_BENCHMARKS, benchmark_file, benchmarks_dir, load_anb,  # noqa: E402
                                load_help_fbnet, load_help_layout, load_macro)


def _fbnet_ops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(OPS), size=(n, 22))


# -- paths ---------------------------------------------------------------------------------
def test_benchmarks_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_BENCHMARKS, str(tmp_path / "env"))
    assert benchmarks_dir() == tmp_path / "env"
    assert benchmarks_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv(ENV_BENCHMARKS)
    assert benchmarks_dir().parts[-2:] == ("shared", "benchmarks")


def test_benchmark_file_accepts_root_subdir_or_file_and_names_what_is_missing(tmp_path):
    f = tmp_path / "help_fbnet" / "fbnet_latency.csv"
    f.parent.mkdir()
    f.write_text("x\n")
    assert benchmark_file(tmp_path, "help_fbnet/fbnet_latency.csv") == f
    assert benchmark_file(f.parent, "help_fbnet/fbnet_latency.csv") == f
    assert benchmark_file(f, "help_fbnet/fbnet_latency.csv") == f
    with pytest.raises(FileNotFoundError, match=f"anb_results.csv.*{ENV_BENCHMARKS}"):
        benchmark_file(tmp_path, "accel_nasbench/anb_results.csv")


# -- HELP ----------------------------------------------------------------------------------
def _help_csv(path, ops: np.ndarray, lat: dict[str, np.ndarray]) -> None:
    head = ["arch_id"] + [f"layer{i}" for i in range(22)] + [f"{d}_ms" for d in lat]
    lines = [",".join(head)]
    for i, r in enumerate(ops):
        lines.append(",".join([str(i)] + [OPS[v] for v in r] + [repr(float(lat[d][i])) for d in lat]))
    path.write_text("\n".join(lines) + "\n")


def test_help_csv_small_file(tmp_path):
    ops = _fbnet_ops(12)
    lat = {"pixel2": np.linspace(10, 30, 12), "raspi4": np.linspace(50, 70, 12)}
    p = tmp_path / "fbnet_latency.csv"
    _help_csv(p, ops, lat)
    ds = load_help_fbnet(p)
    sp = get_space("fbnet")
    assert ds.license == ds.LICENSE == ds.frame.attrs["license"] == "MIT"
    assert ds.devices == ("pixel2", "raspi4") and len(ds) == 12
    np.testing.assert_array_equal(ds.indices, ops)
    assert [tuple(r) for r in ds.canonical] == [sp.canonical(r) for r in ops]
    np.testing.assert_allclose(ds.latency_ms("raspi4"), lat["raspi4"])
    assert str(ds.frame["layer0"].dtype) == "category"
    assert load_help_fbnet(p, devices=("raspi4",)).devices == ("raspi4",)
    with pytest.raises(KeyError, match="pixel9.*pixel2, raspi4"):
        load_help_fbnet(p, devices=("pixel9",))
    with pytest.raises(KeyError, match="no device 'gpu'"):
        ds.latency_ms("gpu")


def test_help_csv_bad_op_and_bad_header(tmp_path):
    p = tmp_path / "fbnet_latency.csv"
    _help_csv(p, _fbnet_ops(3), {"pixel2": np.array([1.0, 2.0, 3.0])})
    lines = p.read_text().splitlines()
    cells = lines[1].split(",")
    lines[1] = ",".join([cells[0], "k7_e9", *cells[2:]])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="k7_e9"):
        load_help_fbnet(p)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not the HELP FBNet CSV"):
        load_help_fbnet(p)


def test_help_csv_shipped_file(fbnet_csv):
    ds = load_help_fbnet(fbnet_csv.parents[1])
    assert len(ds) == 5000 and {"pixel2", "samsung_a50"} <= set(ds.devices)
    assert ds.indices.shape == (5000, 22) and (ds.latency_ms("pixel2") > 0).all()


def _help_layout(root, ops: np.ndarray, lat: dict[str, list]) -> None:
    torch = pytest.importorskip("torch")
    (root / "latency").mkdir(parents=True)
    torch.save({"arch": [{"op_idx_list": [int(v) for v in r], "flops": 1.0} for r in ops]},
               root / "metainfo.pt")
    for d, v in lat.items():
        torch.save(v, root / "latency" / f"{d}.pt")


def test_help_layout_reads_torch_saved_dicts(tmp_path):
    torch = pytest.importorskip("torch")
    ops = _fbnet_ops(9, seed=3)
    lat = {"pixel2": [float(x) for x in np.arange(1, 10)],
           "titanx_1": torch.arange(11, 20, dtype=torch.float32)}
    _help_layout(tmp_path / "fbnet", ops, lat)
    ds = load_help_layout(tmp_path / "fbnet")
    assert ds.license == "MIT" and ds.devices == ("pixel2", "titanx_1")
    np.testing.assert_array_equal(ds.indices, ops)
    np.testing.assert_allclose(ds.latency_ms("titanx_1"), np.arange(11, 20))
    # the same data through the CSV layout reads the same
    _help_csv(tmp_path / "f.csv", ops, {d: np.asarray(ds.latency_ms(d)) for d in ds.devices})
    csv_ds = load_help_fbnet(tmp_path / "f.csv")
    np.testing.assert_array_equal(csv_ds.canonical, ds.canonical)
    assert load_help_layout(tmp_path / "fbnet", devices=["pixel2"]).devices == ("pixel2",)


def test_help_layout_bad_input(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match="metainfo.pt"):
        load_help_layout(tmp_path)
    ops = _fbnet_ops(4)
    _help_layout(tmp_path / "a", ops, {"pixel2": [1.0, 2.0, 3.0]})  # one latency short
    with pytest.raises(ValueError, match="3 latencies for 4 architectures"):
        load_help_layout(tmp_path / "a")
    _help_layout(tmp_path / "b", ops, {"pixel2": [1.0, 2.0, 3.0, -4.0]})
    with pytest.raises(ValueError, match="positive"):
        load_help_layout(tmp_path / "b")
    _help_layout(tmp_path / "c", ops, {"pixel2": [1.0] * 4})
    torch.save({"arch": [{"op_idx_list": [9] * 22}]}, tmp_path / "c" / "metainfo.pt")
    with pytest.raises(ValueError, match="0..8"):
        load_help_layout(tmp_path / "c")
    # weights_only: a file that needs arbitrary unpickling is refused, not run
    torch.save({"arch": [np.random.default_rng(0)]}, tmp_path / "c" / "metainfo.pt")
    with pytest.raises(ValueError, match="not a weights-only tensor file"):
        load_help_layout(tmp_path / "c")


# -- Accel-NASBench ------------------------------------------------------------------------
def _anb_csv(path, rows: list[tuple[list[int], list[str]]]) -> None:
    sp = get_space("anb")
    accs = ("a100", "3090", "tpuv2", "tpuv3")
    head = ["result_id"] + [d.name for d in sp.decisions] + [
        f"throughput_{a}_{k}" for a in accs for k in ("img_s", "std")]
    lines = [",".join(head)]
    for i, (idx, thr) in enumerate(rows):
        vals = [str(d.choices[v]) for d, v in zip(sp.decisions, idx)]
        lines.append(",".join([str(i)] + vals + [x for t in thr for x in (t, "2.0" if t else "")]))
    path.write_text("\n".join(lines) + "\n")


def test_anb_throughput_to_ms_drops_missing_and_repeated(tmp_path):
    sp = get_space("anb")
    rng = np.random.default_rng(0)
    a = [int(rng.integers(0, c)) for c in sp.cardinalities]
    b = list(sp.canonical([int(rng.integers(0, c)) for c in sp.cardinalities]))
    p = tmp_path / "anb_results.csv"
    _anb_csv(p, [(a, ["1000", "500", "100", "250"]), (b, ["", "1", "1", "1"]),
                 (list(sp.canonical(a)), ["9", "9", "9", "9"]), (b, ["2000", "400", "50", "200"])])
    ds = load_anb(p)
    assert ds.license == "Apache-2.0" and ds.frame.attrs["license"] == "Apache-2.0"
    assert ds.info == {"rows_in_file": 4, "rows_missing_a_throughput": 1,
                       "repeated_architectures_dropped": 1, "rows_used": 2}
    np.testing.assert_allclose(ds.latency_ms("a100"), [1.0, 0.5])
    np.testing.assert_allclose(ds.latency_ms("tpuv2"), [10.0, 20.0])
    np.testing.assert_allclose(ds.frame["a100_rel_std"], [2.0 / 1000, 2.0 / 2000])
    assert [tuple(r) for r in ds.canonical] == [sp.canonical(a), tuple(b)]
    with pytest.raises(ValueError, match="accelerators.*'v100'"):
        load_anb(p, accelerators=("v100",))


def test_anb_shipped_file(anb_csv):
    ds = load_anb(anb_csv)
    assert ds.info["rows_used"] > 5000 and ds.canonical.shape[1] == 28
    assert np.all(ds.latency_ms("tpuv2") > ds.latency_ms("a100"))  # A100 serves faster


# -- NAS-Bench-Macro -----------------------------------------------------------------------
def test_macro_small_file_and_unique(tmp_path):
    sp = get_space("nasbench-macro")
    rec = lambda acc: {"test_acc": [acc, acc, acc], "mean_acc": acc, "std": 0.0,  # noqa: E731
                       "params": 10, "flops": 20}
    data = {"00000000": rec(80.0), "11111111": rec(90.0), "22222222": rec(85.0)}
    canon = {k: sp.to_key(sp.canonical(sp.from_key(k))) for k in data}
    p = tmp_path / "nas-bench-macro_cifar10.json"
    p.write_text(json.dumps(data))
    ds = load_macro(tmp_path)
    assert ds.license == "Apache-2.0" and ds.devices == () and len(ds) == 3
    assert list(ds.frame["canonical_key"]) == [canon[k] for k in data]
    np.testing.assert_allclose(ds.frame["accuracy"], [0.80, 0.90, 0.85])
    assert len(load_macro(p, unique=True)) == len(set(canon.values()))
    p.write_text(json.dumps({"0000": rec(1.0)}))
    with pytest.raises(ValueError, match="'0000' is not a NAS-Bench-Macro record"):
        load_macro(p)


def test_macro_shipped_file(macro_json):
    ds = load_macro(macro_json, unique=True)
    assert ds.info["keys_in_file"] == 6561 and len(ds) == ds.info["networks"] == 3969
