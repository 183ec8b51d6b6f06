"""The phone verbs: ``fit --device-timings``, ``predict --predictor`` without a space,
``suggest-timings`` without a space, ``validate published``; bad rows are one line,
exit code 2, and nothing written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from space.reference import resolve_arch
from tests.test_bad_input import ROOT, refused, work  # noqa: F401 (the fixture)

SHARED = ROOT.parent / "shared"
#: five networks and made-up phone timings (the test never claims they are a real phone's)
ROWS = [("mnasnet-a1", 30.0), ("mobilenetv2-1.0", 28.0), ("mobilenetv3-large-1.0", 21.0),
        ("proxylessnas-mobile", 31.0), ("fbnet-c", 36.0)]


def _csv(path: Path, rows, header="arch,ms") -> Path:
    path.write_text(header + "\n" + "".join(f'"{a}",{m}\n' for a, m in rows))
    return path


def run(work: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MNAS_CACHE_DIR": str(work.parent / "cache"),
           "MNAS_HOME": str(work.parent / "home")}
    p = subprocess.run([sys.executable, "-m", "search.cli", *map(str, args)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.parametrize("rows,needles", [
    (ROWS[:4] + [("mnasnet-a1", 45.0)], ["line 2", "same network"]),
    (ROWS[:4] + [(str(resolve_arch("mnasnet-a1")), 45.0)], ["same network", "line 2"]),
    (ROWS[:4] + [("no-such-net", 5.0)], [":6", "unknown network", "no-such-net"]),
    (ROWS[:4] + [("spnasnet", 0)], [":6", "positive", "ms"]),
    (ROWS[:4] + [("spnasnet", "fast")], [":6", "positive"]),
    (ROWS[:2], ["2 timing(s)", "at least 3"]),
])
def test_bad_device_timings_refused(work, rows, needles):
    f = _csv(work.parent / "t.csv", rows)
    refused(work, "fit", "--device-timings", f, "-o", work / "pred", needles=needles)
    assert not (work / "pred").exists()


def test_device_timings_header_and_mixing(work):
    f = _csv(work.parent / "t.csv", ROWS, header="network,latency")
    refused(work, "fit", "--device-timings", f, "-o", work / "pred", needles=["arch,ms"])
    g = _csv(work.parent / "g.csv", ROWS)
    refused(work, "fit", "--device-timings", g, "--space", "mnasnet", "-o", work / "pred",
            needles=["--device-timings"])


def test_transfer_timings_accept_names_and_refuse_duplicates(work):
    names = [("mnasnet-a1", 10.0), ("mnasnet-a1", 15.0), ("mnasnet-b1", 11.0)]
    f = _csv(work.parent / "t.csv", names)
    refused(work, "fit", "--space", "mnasnet", "--transfer-from", "cpu-litert", "--timings", f,
            "-o", work / "p", needles=["same network", "line 2"])


def test_fit_predict_suggest_roundtrip(work):
    f = _csv(work.parent / "t.csv", ROWS)
    out = json.loads(run(work, "fit", "--device-timings", f, "-o", work / "pred", "--device",
                         "myphone", "--no-measure", "--json").stdout)
    assert out["train_rows"] == 5 and out["mode"] in ("consensus", "factors")
    assert (work / "pred" / "meta.json").is_file() and (work / "pred" / "ops.json").is_file()
    p = json.loads(run(work, "predict", "--predictor", work / "pred", "--json", "--no-measure",
                       "mnasnet-a1", "spnasnet", "mnasnet-a1@w0.5,r160").stdout)
    ms = {r["name"]: r["latency_ms"] for r in p["rows"]}
    assert all(v > 0 for v in ms.values())
    assert abs(ms["mnasnet-a1"] / 30.0 - 1) < 0.25  # a training row stays near its timing
    assert ms["mnasnet-a1@w0.5,r160"] < ms["mnasnet-a1"]  # smaller and lower resolution: faster
    assert p["ops"]["modelled"] > 0  # the variant's operators are not in the shipped table
    names = json.loads(run(work, "suggest-timings", "-k", "4", "--json").stdout)["networks"]
    assert len(names) == 4 == len(set(names))
    assert all(resolve_arch(n) for n in names)


@pytest.mark.skipif(not (SHARED / "reference" / "published_latency.csv").is_file(),
                    reason="../shared/reference not present")
def test_validate_published_unknown_device(work):
    refused(work, "validate", "published", "--device", "nokia3310", "--shared", SHARED,
            needles=["--device", "nokia3310", "pixel4"])


@pytest.mark.slow
def test_sweep_on_a_phone_predictor(work):
    """``mnas sweep --predictor DIR`` prices the space's members with a phone predictor
    (the space's operators measured here once, or modelled on another host kind)."""
    f = _csv(work.parent / "t.csv", ROWS)
    run(work, "fit", "--device-timings", f, "-o", work / "pred", "--no-measure")
    run(work, "sweep", "--predictor", work / "pred", "--space", "anb", "--trials", "16",
        "--remeasure", "0", "--out", work / "out")
    rows = (work / "out" / "trials.csv").read_text().splitlines()
    assert len(rows) >= 17 and (work / "out" / "pareto.csv").is_file()
