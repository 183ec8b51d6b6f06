"""The ``mnas arch`` / ``mnas space`` verbs, in process and as a real console script."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from search.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_arch_show_json_has_integer_counts(capsys):
    rc, out, _ = run(capsys, "arch", "show", "mnasnet-a1", "--json")
    data = json.loads(out)
    assert rc == 0
    assert list(data)[:2] == ["params", "madds"]
    assert data["params"] == 3_887_038 and isinstance(data["madds"], int)
    assert [s["stage"] for s in data["stages"]] == ["stem", "1", "2", "3", "4", "5", "6", "7", "head"]
    assert sum(s["params"] for s in data["stages"]) == data["params"]


def test_arch_show_string_and_resolution(capsys):
    rc, out, _ = run(capsys, "arch", "show", "r1_k3_s11_e1_i32_o16,r2_k3_s22_e6_i16_o24",
                     "--resolution", "96", "--json")
    assert rc == 0 and json.loads(out)["resolution"] == 96


def test_space_info_and_sample(capsys):
    rc, out, _ = run(capsys, "space", "info", "nasbench-macro", "--json")
    info = json.loads(out)
    assert rc == 0 and info["size"] == 6561 and info["n_decisions"] == 8
    rc, out, _ = run(capsys, "space", "sample", "anb", "-n", "3", "--seed", "7", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 3
    rc, out2, _ = run(capsys, "space", "sample", "anb", "-n", "3", "--seed", "7", "--json")
    assert out2 == out  # seeded


@pytest.mark.parametrize("argv, needle", [
    (["arch", "show", "r1_k3_s11_e1_i32_o16_nosk"], "nosk"),
    (["arch", "show", "not-a-net"], "not-a-net"),
    (["space", "info", "nope"], "nope"),
    (["space", "sample", "anb", "-n", "0"], "positive integer"),
    (["arch", "show", "mnasnet-a1", "--resolution", "x"], "positive integer"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert "Traceback" not in err


def test_console_script_bad_input_no_traceback():
    exe = shutil.which("mnas")
    cmd = [exe] if exe else [sys.executable, "-m", "search.cli"]
    p = subprocess.run(cmd + ["arch", "show", "r9_k9"], capture_output=True, text=True)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    p = subprocess.run(cmd + ["arch", "show", "mnasnet-b1"], capture_output=True, text=True)
    assert p.returncode == 0 and "4,383,312" in p.stdout


def test_import_space_is_light():
    code = "import sys; import space; print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "False"  # `import space` must not pull in torch
