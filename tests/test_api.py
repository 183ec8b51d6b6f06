"""The public API (package exports, light imports) and the CLI polish of issue 15."""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
import subprocess
import sys

import pytest

from search.cli import build_parser, main


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("pkg", ["space", "surrogate.predict", "surrogate.tables", "search"])
def test_every_exported_name_resolves(pkg):
    mod = importlib.import_module(pkg)
    assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{pkg}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(mod, "nope")


@pytest.mark.parametrize("pkg, heavy", [
    ("space", ("torch", "xgboost", "optuna", "sklearn")),
    ("surrogate.predict", ("torch", "xgboost", "optuna", "sklearn")),
    ("search", ("torch", "xgboost", "optuna", "sklearn")),
])
def test_imports_stay_light(pkg, heavy):
    code = (f"import sys; import {pkg}; "
            f"print([m for m in {list(heavy)!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_shipped_predictor_and_load_predictor_agree():
    pytest.importorskip("xgboost")
    from surrogate.predict import default_predictor_dir, load_predictor, shipped_predictor

    import numpy as np

    a = shipped_predictor("cpu-litert", "anb")
    b = load_predictor(default_predictor_dir("cpu-litert", "anb"))
    idx = a.features_.space_.sample_indices(np.random.default_rng(0), 5)
    assert type(a) is type(b) and a.predict(idx).tolist() == b.predict(idx).tolist()

def _walk(parser, path=("mnas",)):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _walk(sub, (*path, name))
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            yield " ".join(path), parser, a


def test_every_option_has_help_and_shows_its_default():
    missing, hidden = [], []
    for where, parser, a in _walk(build_parser()):
        if not a.help:
            missing.append(f"{where} {a.option_strings or a.dest}")
            continue
        if a.option_strings and a.default not in (None, False) and "default" not in a.help.lower():
            text = parser.format_help()
            if f"(default: {a.default})" not in " ".join(text.split()):
                hidden.append(f"{where} {a.option_strings}")
    assert not missing, missing
    assert not hidden, hidden


def test_space_sample_prints_strings_that_predict_and_archs_read(capsys, tmp_path):
    from space.blockstring import parse_arch
    from space.spaces import get_space
    from surrogate.cli import _archs_from_file

    rc, out, _ = run(capsys, "space", "sample", "anb", "-n", "4", "--seed", "2")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 4
    sp = get_space("anb")
    assert all(sp.from_arch(parse_arch(s)) is not None for s in lines)
    f = tmp_path / "archs.txt"
    f.write_text(out)
    assert [str(a) for a, _ in _archs_from_file(str(f), sp)] == lines
    rc, table, _ = run(capsys, "space", "sample", "anb", "-n", "4", "--seed", "2", "--table")
    assert rc == 0 and table.splitlines()[0].split()[:2] == ["params", "MAdds"]
    assert [ln.split()[-1] for ln in table.splitlines()[1:]] == lines


def test_arch_show_width_and_resolution(capsys):
    rc, out, _ = run(capsys, "arch", "show", "mnasnet-a1", "--width", "0.75", "--resolution", "192",
                     "--json")
    by_opts = json.loads(out)
    rc2, out2, _ = run(capsys, "arch", "show", "mnasnet-a1@w0.75,r192", "--json")
    assert rc == rc2 == 0 and json.loads(out2) == by_opts
    assert by_opts["name"] == "mnasnet-a1@w0.75,r192" and by_opts["resolution"] == 192
    rc, _, err = run(capsys, "arch", "show", "mnasnet-a1@w0.75", "--width", "0.5")
    assert rc == 2 and "already names a variant" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "arch", "show", "mnasnet-a1", "--width", "-1")
    assert rc == 2 and "expected a positive number" in err


def test_predict_prices_reference_variants(capsys):
    pytest.importorskip("xgboost")
    rc, out, err = run(capsys, "predict", "--profile", "cpu-litert", "--space", "mnasnet",
                       "mnasnet-a1", "mnasnet-a1@w0.75,r192", "--json")
    assert rc == 0, err
    member, variant = json.loads(out)
    assert member["method"] == "model" and member["modelled_ops"] == 0
    assert variant["method"] == "table" and variant["name"] == "mnasnet-a1@w0.75,r192"
    assert 0 < variant["latency_ms"] < member["latency_ms"]
    rc, out2, _ = run(capsys, "predict", "--profile", "cpu-litert", "--space", "mnasnet",
                      "mnasnet-a1", "--width", "0.75", "--resolution", "192", "--json")
    assert rc == 0 and json.loads(out2)[0]["latency_ms"] == pytest.approx(variant["latency_ms"])
    rc, out3, _ = run(capsys, "predict", "--profile", "cpu-litert", "--space", "mnasnet",
                      "mnasnet-a1@r192", "--breakdown")
    lines = out3.splitlines()
    assert rc == 0 and "table" in lines[0] and len(lines) > 10
    assert all(("measured" in ln or "modelled" in ln) for ln in lines[1:])


@pytest.mark.parametrize("verb", [["sweep"], ["search"], ["fit", "--space", "anb", "-o", "x"],
                                  ["predict", "--space", "anb", "mnasnet-a1"],
                                  ["host"], ["measure", "ops", "--space", "anb"]])
def test_unknown_profile_lists_the_valid_ones(capsys, verb):
    rc, _, err = run(capsys, *verb, "--profile", "cpu-nope")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "cpu-nope" in err and "cpu-litert" in err and "cpu-onnxruntime" in err


def test_missing_predictor_suggests_a_fit_command_argparse_accepts(tmp_path):
    from search.latency import PredictedLatency

    with pytest.raises(FileNotFoundError) as e:
        PredictedLatency("cpu-onnxruntime", "fbnet", tmp_path / "no such predictor")
    suggestion = str(e.value).split("fit one with: ", 1)[1]
    argv = shlex.split(suggestion)
    assert argv[0] == "mnas"
    args = build_parser().parse_args(argv[1:])  # raises UsageError if argparse rejects it
    assert args.func.__name__ == "_cmd_fit" and args.profile == "cpu-onnxruntime"
