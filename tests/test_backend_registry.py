"""The backend registry: every runtime's meaning in one class (surrogate.measure.backends)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from surrogate.measure import backends
from surrogate.measure.backends import BACKENDS, Backend, get_backend, register, runtimes
from surrogate.measure.profiles import PROFILES, DeviceProfile, get_profile, make_runner
from surrogate.measure.runner_base import FileRunner, Runner
from surrogate.measure.runners import TorchRunner


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_runtime_has_a_backend(name, tmp_path):
    from surrogate.measure.export import ExportCache

    prof = PROFILES[name]
    b = get_backend(prof.runtime)
    assert isinstance(b, Backend) and b.runtime == prof.runtime and prof.backend is b
    assert issubclass(b.runner, Runner) and prof.exporter == b.fmt
    assert issubclass(b.runner, FileRunner) == (b.fmt != "none")
    assert prof.precision in b.precisions and (prof.clock != "cpu" or b.cpu_clock)
    assert set(prof.runtime_versions()) >= {"torch"} and "torch" in b.versions()
    r = make_runner(prof, ExportCache(tmp_path), executor=lambda cmd: (0, ""))
    assert type(r) is b.runner
    assert (r.export_options is None) == (b.fmt == "none")
    if r.export_options is not None:
        assert r.export_options["fmt"] == b.fmt


def test_runtime_facts_come_from_the_backends():
    assert runtimes() == ("litert", "onnxruntime", "torch", "torch-cuda", "adb-benchmark_model")
    assert runtimes(cpu_clock=True) == ("litert", "onnxruntime", "torch")
    assert runtimes(fmt="tflite") == ("litert", "adb-benchmark_model")
    assert get_backend("litert").export_options(get_profile("cpu-litert")) == {
        "fmt": "tflite", "nhwc": True, "converter": "direct"}
    assert get_backend("onnxruntime").export_options(get_profile("cpu-onnxruntime")) == {"fmt": "onnx"}
    assert get_backend("torch").export_options(get_profile("cpu-torch")) is None
    assert get_profile("cpu-litert").runtime_version() == get_backend("litert").versions()["litert"]


def test_unknown_runtime_fails_in_one_line_naming_it_and_the_known_ones():
    with pytest.raises(ValueError) as exc:
        get_backend("tpu-magic")
    msg = str(exc.value)
    assert "\n" not in msg and "'tpu-magic'" in msg
    assert all(rt in msg for rt in BACKENDS)
    with pytest.raises(ValueError) as exc:
        DeviceProfile(name="x", runtime="tpu-magic")
    msg = str(exc.value)
    assert "\n" not in msg and "profile 'x'" in msg and "'tpu-magic'" in msg and "onnxruntime" in msg
    with pytest.raises(ValueError, match="loads 'tflite' models, not exporter 'onnx'"):
        DeviceProfile(name="x", runtime="litert", exporter="onnx")
    with pytest.raises(ValueError, match="float16 is only supported by torch-cuda"):
        get_profile("cpu-torch", precision="float16")


def test_adding_a_runtime_is_one_registered_class(tmp_path):
    """A new runtime: one Backend subclass; profiles validate, report and run through it."""
    from surrogate.measure.export import ExportCache

    @register
    class _EagerTwin(Backend):
        runtime = "test-eager-twin"
        runner = TorchRunner
        cpu_clock = True

    try:
        prof = DeviceProfile(name="twin", runtime="test-eager-twin", clock="cpu")
        assert prof.exporter == "none" and prof.available()[0]
        assert "test-eager-twin" in runtimes(cpu_clock=True)
        r = make_runner(prof, ExportCache(tmp_path))
        assert isinstance(r, TorchRunner)
        import torch

        h = r.load(torch.nn.Conv2d(3, 4, 3), (1, 3, 8, 8))
        assert r.time(h, warmup=0, runs=2).shape == (2,) and np.all(r.time(h, 0, 1) > 0)
        r.unpin()
        with pytest.raises(ValueError, match="taken"):
            register(_EagerTwin)
    finally:
        BACKENDS.pop("test-eager-twin", None)
    assert "test-eager-twin" not in backends.runtimes()
    with pytest.raises(ValueError, match="unknown runtime"):
        dataclasses.replace(prof)


def test_litert_needs_litert_torch_only_for_that_converter(monkeypatch):
    """The default install has no litert-torch: the direct writer must be enough."""
    import dataclasses

    from surrogate.measure import backends
    from surrogate.measure.profiles import get_profile

    real = backends.has_module
    monkeypatch.setattr(backends, "has_module", lambda m: False if m == "litert_torch" else real(m))
    prof = get_profile("cpu-litert")
    ok, why = prof.available()
    if "no LiteRT interpreter" in why:
        pytest.skip(why)
    assert ok and "direct" in why
    ok, why = dataclasses.replace(prof, converter="litert-torch").available()
    assert not ok and "litert-torch" in why and "--converter direct" in why
