"""Tests of surrogate.measure: profiles, export cache, runners, adb, timing.

Runtimes that are not installed make their tests skip with the reason; nothing
here needs a phone or a GPU. The litert-torch conversion tests take > 5 s
(import + conversion) and are marked ``slow``.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from surrogate.measure import adb, timing
from surrogate.measure.export import ExportCache, module_fingerprint, normalize_shape
from surrogate.measure.profiles import PROFILES, DeviceProfile, get_profile, make_runner
from surrogate.measure.pinning import pin_process, pinned

torch = pytest.importorskip("torch", reason="torch is not installed")


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


needs_ort = pytest.mark.skipif(not (_has("onnxruntime") and _has("onnx")),
                               reason="onnxruntime/onnx not installed (optional runtime)")
needs_litert = pytest.mark.skipif(
    not (_has("ai_edge_litert") or _has("tflite_runtime")),  # .tflite from the direct writer
    reason="ai-edge-litert not installed (optional runtime)",
)


def tiny_module(seed: int = 0) -> "torch.nn.Module":
    """Conv3x3 + BN + ReLU on 8 channels with non-trivial BN statistics."""
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU()
    )
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(m[0].weight.shape, generator=g) * 0.2)
        m[1].running_mean.copy_(torch.rand(8, generator=g) - 0.5)
        m[1].running_var.copy_(torch.rand(8, generator=g) + 0.5)
        m[1].weight.copy_(torch.rand(8, generator=g) + 0.5)
        m[1].bias.copy_(torch.rand(8, generator=g) - 0.5)
    return m.eval()


SHAPE = (1, 8, 8, 8)


def _input(shape=SHAPE, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _torch_out(m, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return m(torch.from_numpy(x)).numpy()


@pytest.fixture(autouse=True)
def _restore_affinity():
    mask = os.sched_getaffinity(0)
    yield
    pin_process(mask)  # runners pin every thread of the process


# ------------------------------------------------------------------ profiles


def test_registry_has_required_profiles():
    for name in ("cpu-litert", "cpu-onnxruntime", "cpu-torch", "cuda-torch", "android-adb"):
        assert name in PROFILES
    p = get_profile("cpu-litert")
    assert (p.threads, p.batch, p.layout, p.precision, p.runtime) == (1, 1, "NHWC", "float32", "litert")
    assert p.pin_core is not None


def test_bad_profile_name_names_it_and_the_choices():
    with pytest.raises(ValueError, match="no-such-device") as exc:
        get_profile("no-such-device")
    assert "cpu-litert" in str(exc.value)


def test_profile_overrides_and_bad_field():
    p = get_profile("cuda-torch", batch=64, cuda_graphs=True)
    assert (p.batch, p.cuda_graphs, p.name) == (64, True, "cuda-torch")
    with pytest.raises(ValueError, match="bogus"):
        get_profile("cuda-torch", bogus=1)
    with pytest.raises(ValueError, match="batch"):
        get_profile("cpu-torch", batch=0)
    with pytest.raises(ValueError, match="layout"):
        DeviceProfile(name="x", runtime="torch", layout="CHWN")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_reports_availability(name):
    ok, reason = PROFILES[name].available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason


def test_cuda_profile_unavailable_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    ok, reason = get_profile("cuda-torch").available()
    assert not ok and "CUDA" in reason


def test_host_info_is_complete_provenance():
    info = get_profile("cpu-litert").host_info()
    for key in ("cpu_model", "cpu_count", "runtime_versions", "python", "date_utc", "profile"):
        assert info[key] not in (None, "")
    assert info["profile"]["name"] == "cpu-litert"
    assert info["runtime_versions"]["torch"]


def test_adb_availability_with_fake_adb(monkeypatch):
    monkeypatch.delenv("MNAS_ADB_SERIAL", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    p = get_profile("android-adb")
    two = "List of devices attached\nAAA111\tdevice\nBBB222\tdevice\n\n"
    ok, reason = p.available(executor=lambda cmd: (0, two))
    assert not ok and "MNAS_ADB_SERIAL" in reason
    ok, _ = p.available(serial="BBB222", executor=lambda cmd: (0, two))
    assert ok
    monkeypatch.setenv("MNAS_ADB_SERIAL", "CCC333")
    ok, reason = p.available(executor=lambda cmd: (0, two))
    assert not ok and "CCC333" in reason
    ok, reason = p.available(executor=lambda cmd: (0, "List of devices attached\n\n"))
    assert not ok


# -------------------------------------------------------------------- export


def test_normalize_shape():
    assert normalize_shape((8, 4, 4), batch=2) == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="input_shape"):
        normalize_shape((1, 0, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        normalize_shape("abc")


def test_fingerprint_depends_on_weights_shape_and_exporter():
    a, b = tiny_module(0), tiny_module(1)
    k = module_fingerprint(a, SHAPE, "e", "1")
    assert k == module_fingerprint(tiny_module(0), SHAPE, "e", "1")
    assert k != module_fingerprint(b, SHAPE, "e", "1")
    assert k != module_fingerprint(a, (1, 8, 16, 16), "e", "1")
    assert k != module_fingerprint(a, SHAPE, "e", "2")
    assert k != module_fingerprint(a, SHAPE, "f", "1")


def test_fingerprint_tells_residual_from_plain_layer():
    """Same weights and repr, but one adds its skip: the cached exports must differ."""
    pytest.importorskip("torch")
    from space.arch import LayerConfig
    from space.build import build_op, op_input_shape

    add = LayerConfig(op="mbconv", h=14, w=14, in_ch=16, out_ch=16, kernel=3, stride=1,
                      expand=3, se=0.0, skip="identity", groups=1, act="relu")
    plain = LayerConfig(op="mbconv", h=14, w=14, in_ch=16, out_ch=16, kernel=3, stride=1,
                        expand=3, se=0.0, skip="none", groups=1, act="relu")
    assert add.residual == "add" and plain.residual == "none"
    keys = {module_fingerprint(build_op(lc), op_input_shape(lc), "e", "1") for lc in (add, plain)}
    assert len(keys) == 2


def test_cia_scan_cache_returns_what_torch_computes():
    """The conversion speed-up memoises torch.export's op scan without changing it."""
    pytest.importorskip("torch")
    import torch.export.exported_program as ep

    from surrogate.measure.export import _install_cia_cache

    _install_cia_cache()
    fn = ep._collect_all_valid_cia_ops
    original = getattr(fn, "__wrapped__", None)
    if original is None:
        pytest.skip("this torch version does not have the scanned function layout")
    first = fn()
    assert first == original() and len(first) > 100
    first.clear()  # callers get copies: the memo cannot be corrupted
    assert fn() == original()


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MNAS_CACHE_DIR", str(tmp_path / "c"))
    assert ExportCache().dir == tmp_path / "c"


def test_bad_export_format(tmp_path):
    with pytest.raises(ValueError, match="pb"):
        ExportCache(tmp_path).export(tiny_module(), SHAPE, "pb")


@needs_ort
def test_onnx_export_is_cached(tmp_path):
    cache = ExportCache(tmp_path)
    m = tiny_module()
    r1 = cache.export(m, SHAPE, "onnx")
    assert not r1.cached and r1.path.is_file() and r1.path.name == f"{r1.key}.onnx"
    mtime = r1.path.stat().st_mtime_ns
    r2 = ExportCache(tmp_path).export(tiny_module(), SHAPE, "onnx")  # fresh object, same content
    assert r2.cached and r2.path == r1.path and r2.path.stat().st_mtime_ns == mtime
    assert cache.conversions == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]


# ------------------------------------------------------------------- runners


@needs_ort
def test_ort_runner_times_and_matches_torch(tmp_path):
    m = tiny_module()
    r = make_runner("cpu-onnxruntime", ExportCache(tmp_path))
    h = r.load(m, SHAPE)
    t = r.time(h, warmup=2, runs=5)
    assert t.shape == (5,) and np.all(np.isfinite(t)) and np.all(t > 0)
    x = _input()
    np.testing.assert_allclose(r.run(h, x), _torch_out(m, x), atol=1e-4)
    assert r.pinned_core in os.sched_getaffinity(0) and len(os.sched_getaffinity(0)) == 1


def test_torch_runner_times_and_matches(tmp_path):
    m = tiny_module()
    r = make_runner("cpu-torch", ExportCache(tmp_path))
    h = r.load(m, (8, 8, 8))  # batch taken from the profile
    assert h.input_shape == SHAPE
    t = r.time(h, warmup=1, runs=4)
    assert t.shape == (4,) and np.all(np.isfinite(t)) and np.all(t > 0)
    x = _input()
    np.testing.assert_allclose(r.run(h, x), _torch_out(m, x), atol=1e-6)
    with pytest.raises(ValueError, match="runs"):
        r.time(h, warmup=0, runs=0)
    with pytest.raises(ValueError, match="shape"):
        r.run(h, _input((1, 8, 4, 4)))


def test_pinned_restores_mask():
    before = os.sched_getaffinity(0)
    with pinned(-1) as core:
        assert os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="core"):
        with pinned(10_000):
            pass


@pytest.fixture(scope="module")
def litert_setup(tmp_path_factory):
    cache = ExportCache(tmp_path_factory.mktemp("tflite"))
    m = tiny_module()
    first = cache.export(m, SHAPE, "tflite")
    return cache, m, first


@needs_litert
@pytest.mark.slow
def test_litert_export_is_cached(litert_setup):
    cache, m, first = litert_setup
    assert not first.cached and first.path.suffix == ".tflite"
    mtime = first.path.stat().st_mtime_ns
    n = cache.conversions
    again = cache.export(tiny_module(), SHAPE, "tflite")
    assert again.cached and again.path == first.path
    assert cache.conversions == n and first.path.stat().st_mtime_ns == mtime


@needs_litert
@pytest.mark.slow
def test_litert_runner_times_and_matches_torch(litert_setup):
    cache, m, _ = litert_setup
    r = make_runner("cpu-litert", cache)
    h = r.load(m, SHAPE)
    assert h.info["export_cached"] is True  # converted once by the fixture
    assert h.feed_shape == (1, 8, 8, 8) and h.info["nhwc"]
    assert h.info["xnnpack_delegate"] is True
    assert "TRANSPOSE" not in h.info["ops"]  # NHWC I/O adds no layout transposes
    t = r.time(h, warmup=2, runs=10)
    assert t.shape == (10,) and np.all(np.isfinite(t)) and np.all(t > 0)
    x = _input()
    np.testing.assert_allclose(r.run(h, x), _torch_out(m, x), atol=1e-4)


@needs_litert
def test_litert_missing_file(tmp_path):
    r = make_runner("cpu-litert", ExportCache(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        r.load_file(tmp_path / "nope.tflite", SHAPE)


# ----------------------------------------------------------------------- adb

# Real benchmark_model output. Old style, no log prefix: tensorflow/tensorflow#42507.
BENCH_OLD = """STARTING!
Duplicate flags: num_threads
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model /data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite
The input model file size (MB): 0.004448
Initialized session in 0.855ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=15 first=49060 curr=33682 min=32825 max=49060 avg=34825.1 std=3930

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450

Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=0 overall=12.8672
"""

# Newer builds: INFO: prefix, percentiles, scientific notation (ssd_mobilenet_v2, --use_xnnpack=false).
BENCH_NEW = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite]
INFO: Signature to run: []
INFO: Use xnnpack: [0]
INFO: Loaded model /usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 5.579ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415

INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
"""

# XNNPACK on a phone CPU (mobilenet_v1 quant; lines as printed by recent builds).
BENCH_XNNPACK = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [./mobilenet_v1_1.0_224_quant.tflite]
INFO: Loaded model ./mobilenet_v1_1.0_224_quant.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 31 out of 31 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for the whole graph.
INFO: The input model file size (MB): 4.27635
INFO: Initialized session in 7.003ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 300 seconds.
INFO: count=9 first=56903 curr=56276 min=56251 max=56903 avg=56415.2 std=245

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 300 seconds.
INFO: count=50 first=56282 curr=56234 min=56227 max=56707 avg=56283.9 std=79

INFO: Inference timings in us: Init: 7003, First inference: 56903, Warmup (avg): 56415.2, Inference (avg): 56283.9
"""


def test_parse_old_style_output():
    b = adb.parse_benchmark_output(BENCH_OLD)
    assert (b.init_us, b.first_inference_us, b.warmup_avg_us, b.inference_avg_us) == (855, 49060, 34825.1, 33209.4)
    assert b.inference.count == 50 and b.inference.min_us == 32641 and b.inference.std_us == 450
    assert b.warmup.count == 15 and b.warmup.avg_us == 34825.1
    assert b.latency_ms == pytest.approx(33.2094)  # no median printed: mean
    assert b.model_size_mb == pytest.approx(0.004448) and b.init_session_ms == pytest.approx(0.855)


def test_parse_new_style_output_with_percentiles():
    b = adb.parse_benchmark_output(BENCH_NEW)
    assert b.inference_avg_us == pytest.approx(1.24027e6)
    assert b.inference.median_us == 1239807 and b.inference.p95_us == 1247415
    assert b.warmup.count == 1 and b.warmup.median_us == 1357602
    assert b.latency_ms == pytest.approx(1239.807)  # median preferred
    assert b.mean_ms == pytest.approx(1240.27)


def test_parse_xnnpack_delegation():
    b = adb.parse_benchmark_output(BENCH_XNNPACK)
    assert (b.delegate, b.delegated_nodes, b.total_nodes) == ("TfLiteXNNPackDelegate", 31, 31)
    assert b.latency_ms == pytest.approx(56.2839)


def test_parse_failure_names_the_problem():
    with pytest.raises(ValueError, match="no timing"):
        adb.parse_benchmark_output("ERROR: Could not open '/data/local/tmp/x.tflite'.\n")


def test_adb_commands(monkeypatch):
    monkeypatch.delenv("MNAS_ADB_SERIAL", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    assert adb.core_mask(7) == "80" and adb.core_mask([4, 5, 6, 7]) == "f0"
    assert adb.push_command("/c/k.tflite", "/data/local/tmp/mnas/k.tflite", "SER1") == [
        "adb", "-s", "SER1", "push", "/c/k.tflite", "/data/local/tmp/mnas/k.tflite"]
    assert adb.benchmark_command("/data/local/tmp/mnas/k.tflite", serial="SER1", warmup=5, runs=40, cores=7) == [
        "adb", "-s", "SER1", "shell", "taskset", "80", "/data/local/tmp/benchmark_model",
        "--graph=/data/local/tmp/mnas/k.tflite", "--num_threads=1", "--warmup_runs=5", "--num_runs=40",
        "--warmup_min_secs=0", "--min_secs=0", "--use_xnnpack=true"]
    assert adb.adb_prefix(None) == ["adb"]
    monkeypatch.setenv("ANDROID_SERIAL", "ENV9")
    assert adb.adb_prefix(None) == ["adb", "-s", "ENV9"]
    with pytest.raises(ValueError, match="cores"):
        adb.core_mask([-1])


def test_adb_runner_with_fake_executor(tmp_path, monkeypatch):
    monkeypatch.delenv("MNAS_ADB_SERIAL", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    cache = ExportCache(tmp_path)
    m = tiny_module()
    key = cache.key(m, SHAPE, "tflite")
    cache.path_for(key, "tflite").parent.mkdir(parents=True, exist_ok=True)
    cache.path_for(key, "tflite").write_bytes(b"stand-in")  # pre-seeded cache: no converter needed
    calls: list[list[str]] = []

    def fake(cmd):
        calls.append(list(cmd))
        if cmd[-1] == "/sys/devices/system/cpu/possible":
            return 0, "0-7\n"
        if "--num_runs=50" in cmd:
            return 0, BENCH_XNNPACK
        return 0, ""

    r = make_runner("android-adb", cache, serial="PHONE1", executor=fake)
    h = r.load(m, SHAPE)
    t = r.time(h)  # profile defaults: 20 warm-up, 50 runs
    assert t.tolist() == [pytest.approx(56.2839)]
    remote = f"/data/local/tmp/mnas/{key}.tflite"
    assert calls[0] == ["adb", "-s", "PHONE1", "shell", "mkdir", "-p", "/data/local/tmp/mnas"]
    assert calls[1] == ["adb", "-s", "PHONE1", "push", str(cache.path_for(key, "tflite")), remote]
    assert calls[-1][:6] == ["adb", "-s", "PHONE1", "shell", "taskset", "80"]
    assert f"--graph={remote}" in calls[-1] and "--warmup_runs=20" in calls[-1]
    r.load(m, SHAPE)
    assert sum(c[3] == "push" for c in calls) == 1  # pushed once
    with pytest.raises(NotImplementedError):
        r.run(h, _input())


def test_adb_runner_reports_tool_failure(tmp_path):
    cache = ExportCache(tmp_path)
    m = tiny_module()
    p = cache.path_for(cache.key(m, SHAPE, "tflite"), "tflite")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    r = make_runner("android-adb", cache, serial="S", executor=lambda c: (1, "error: device offline"))
    with pytest.raises(RuntimeError, match="device offline"):
        r.load(m, SHAPE)


# -------------------------------------------------------------------- timing


def _const(ms: float):
    return lambda warmup, runs: np.full(runs, ms)


def test_measure_interleaves_and_summarises():
    order: list[str] = []

    def item(name, ms):
        def fn(warmup, runs):
            order.append(name)
            return np.full(runs, ms)
        return fn

    s = timing.MeasureSettings(warmup=1, runs=4, rounds=3, seed=7)
    rep = timing.measure({n: item(n, v) for n, v in [("a", 1.0), ("b", 2.0), ("c", 3.0)]}, s)
    assert rep.results["b"].median_ms == 2.0 and rep.results["b"].n_runs == 12
    assert rep.results["c"].n_rounds == 3 and not rep.results["c"].remeasured
    assert sorted(order[:3]) == ["a", "b", "c"] and sorted(order[3:6]) == ["a", "b", "c"]
    order2: list[str] = []
    order.clear()
    timing.measure({n: item(n, 1.0) for n in "abc"}, s)
    order2[:] = order
    order.clear()
    timing.measure({n: item(n, 1.0) for n in "abc"}, s)
    assert order == order2  # seeded shuffles are reproducible


def test_measure_remeasures_wide_items_and_reports_drift():
    calls = {"n": 0}

    def noisy(warmup, runs):
        calls["n"] += 1
        return np.full(runs, 1.0 if calls["n"] % 2 else 2.0)

    ref_calls = {"n": 0}

    def drifting_ref(warmup, runs):
        ref_calls["n"] += 1
        return np.full(runs, 1.0 + 0.1 * ref_calls["n"])

    s = timing.MeasureSettings(warmup=0, runs=3, rounds=5, max_extra_rounds=2, reference_every=1)
    rep = timing.measure([("noisy", noisy), ("steady", _const(1.0))], s, reference=("ref", drifting_ref))
    assert rep.results["noisy"].remeasured and rep.results["noisy"].n_rounds == 7
    assert not rep.results["steady"].remeasured and rep.results["steady"].n_rounds == 5
    assert rep.drift_ratio > 1.5 and rep.drift_last_first > 1.5
    assert len(rep.reference_ms) == ref_calls["n"]


def test_summarize_statistics():
    r = timing.summarize("x", [np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), np.array([4.0, 4.0, 4.0])],
                         estimator="median")
    assert r.median_ms == 2.0 and r.n_runs == 9 and r.n_rounds == 3
    assert r.mean_ms == pytest.approx(np.mean([1, 2, 3, 2, 2, 2, 4, 4, 4]))
    assert r.p10_ms <= r.median_ms <= r.p90_ms and r.cv > 0
    assert r.mad_ms == 0.0  # 2 of 3 round medians agree
    assert r.rel_spread == pytest.approx(0.5)  # IQR of round medians [2, 2, 4] / 2


def test_measure_bad_input():
    with pytest.raises(ValueError, match="reference 'zz'"):
        timing.measure({"a": _const(1.0)}, reference="zz")
    with pytest.raises(ValueError, match="unique"):
        timing.measure([("a", _const(1.0)), ("a", _const(1.0))])
    with pytest.raises(ValueError, match="runs"):
        timing.MeasureSettings(runs=0)


def test_min_round_ms_raises_runs_for_fast_items():
    seen: list[int] = []

    def fast(warmup, runs):
        seen.append(runs)
        return np.full(runs, 0.01)

    timing.measure({"f": fast}, timing.MeasureSettings(runs=5, rounds=2, min_round_ms=1.0))
    assert seen == [5, 100]


def test_timing_with_real_runner(tmp_path):
    r = make_runner("cpu-torch", ExportCache(tmp_path))
    h = r.load(tiny_module(), SHAPE)
    rep = timing.measure({"conv": r.timer(h)}, timing.MeasureSettings(warmup=1, runs=3, rounds=2),
                         reference="conv")
    res = rep.results["conv"]
    assert res.median_ms > 0 and np.isfinite(res.median_ms) and res.n_runs >= 6


def test_other_load_reported():
    rep = timing.measure({"a": _const(1.0)}, timing.MeasureSettings(rounds=1, runs=1, warmup=0))
    assert rep.other_cpu_cores is None or rep.other_cpu_cores >= 0.0
    ol = timing.OtherLoad()
    ol.start()
    v = ol.stop()
    assert v is None or v >= 0.0


@needs_ort
@pytest.mark.slow
def test_convert_many_in_pinned_worker(tmp_path):
    from surrogate.measure.export import convert_many

    cache = ExportCache(tmp_path)
    jobs = [(tiny_module(s), SHAPE) for s in (0, 1)]
    cpus = [min(os.sched_getaffinity(0))]  # a core this process may use (core 0 need not be one)
    res = convert_many(jobs, "onnx", cache, processes=1, cpus=cpus)
    assert [r.cached for r in res] == [False, False] and cache.conversions == 2
    res = convert_many(jobs, "onnx", cache, processes=1, cpus=cpus)
    assert [r.cached for r in res] == [True, True] and cache.conversions == 2


def test_free_cpus_excludes_timing_core_after_pinning(tmp_path):
    before = sorted(os.sched_getaffinity(0))
    r = make_runner("cpu-torch", ExportCache(tmp_path))
    expected = [c for c in before if c != before[-1]]
    assert r.free_cpus() == expected
    h = r.load(tiny_module(), SHAPE)
    r.time(h, warmup=0, runs=1)  # pins the process
    assert os.sched_getaffinity(0) == {before[-1]}
    assert r.free_cpus() == expected  # still the other cores, not the pinned mask
