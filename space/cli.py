"""CLI verbs owned by :mod:`space`: ``mnas arch`` and ``mnas space``.

Also the small pieces every verb shares: an argument parser whose errors are one
line on stderr with exit code 2, and JSON printing.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .arch import Arch


class UsageError(ValueError):
    """Bad command-line input (printed as one line, exit code 2)."""


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says it (or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2; defaults shown."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        """Raise :class:`UsageError` instead of printing usage and exiting."""
        raise UsageError(f"{self.prog}: {message}")


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON (numpy scalars converted)."""
    def default(o):
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serialisable: {type(o).__name__}")

    json.dump(obj, sys.stdout, indent=2, default=default)
    sys.stdout.write("\n")


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = {c: max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c])) for r in rows))
              for c in cols}
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    for r in rows:
        lines.append("  ".join(fmt(r[c]).rjust(widths[c]) if isinstance(r[c], int)
                               else fmt(r[c]).ljust(widths[c]) for c in cols))
    return "\n".join(lines)


# -- mnas arch -----------------------------------------------------------------------
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def add_variant_args(p: argparse.ArgumentParser) -> None:
    """``--width`` and ``--resolution``: a variant of each named network."""
    p.add_argument("--width", type=positive_float, default=None, metavar="M",
                   help="width multiplier applied to the network(s), with the release rounding "
                        "(default: as registered)")
    p.add_argument("--resolution", type=positive_int, default=None, metavar="R",
                   help="input resolution (default: the network's own)")


def resolve_variant(text: str, width: float | None = None, resolution: int | None = None,
                    what: str = "architecture") -> "Arch":
    """A name, variant name or architecture string, then ``width`` / ``resolution`` applied."""
    from .reference import resolve_arch, variant

    if "@" in text and (width is not None or resolution is not None):
        raise UsageError(f"{what} {text!r} already names a variant; give the width and resolution "
                         f"either after '@' or as --width/--resolution, not both")
    arch = resolve_arch(text)
    if width is None and resolution is None:
        return arch
    return variant(arch, width, resolution)


def arch_summary(text: str, resolution: int | None = None, width: float | None = None) -> dict:
    """Counts and per-stage table of a named, varied or written architecture."""
    from .blockstring import format_arch
    from .counting import count, stage_table

    arch = resolve_variant(text, width, resolution)
    c = count(arch)
    return {"params": c.params, "madds": c.madds, "macs_thop": c.macs_thop,
            "name": arch.name, "arch": format_arch(arch), "resolution": arch.resolution,
            "layers": len(arch.layers()), "stages": stage_table(arch)}


def _cmd_arch_show(args) -> int:
    info = arch_summary(args.arch, args.resolution, args.width)
    if args.json:
        print_json(info)
        return 0
    title = info["name"] or "architecture"
    print(f"{title} @ {info['resolution']}x{info['resolution']}")
    print(f"  string : {info['arch']}")
    print(f"  params : {info['params']:,}")
    print(f"  MAdds  : {info['madds']:,} ({info['madds'] / 1e6:.1f}M)")
    print(f"  layers : {info['layers']}")
    print()
    print(_table(info["stages"], ["stage", "block", "input", "output", "params", "madds"]))
    return 0


def _cmd_arch_list(args) -> int:
    from .counting import count
    from .reference import REFERENCE

    rows = []
    for name in sorted(REFERENCE):
        a = REFERENCE[name]
        c = count(a)
        rows.append({"name": name, "resolution": a.resolution, "params": c.params, "madds": c.madds})
    if args.json:
        print_json(rows)
    else:
        print(_table(rows, ["name", "resolution", "params", "madds"]))
    return 0


# -- mnas space ----------------------------------------------------------------------
def _cmd_space_info(args) -> int:
    from .spaces import get_space

    sp = get_space(args.space)
    info = sp.info()
    info["n_operator_configs"] = len(sp.operator_configs())
    if args.json:
        print_json(info)
        return 0
    print(f"{info['name']}: {info['description']}")
    print(f"  decisions: {info['n_decisions']}, index vectors: {info['size']:.4g}, "
          f"distinct operator configurations: {info['n_operator_configs']}")
    for d in info["decisions"]:
        print(f"  {d['name']:<14} {d['choices']}")
    return 0


def _cmd_space_sample(args) -> int:
    from .blockstring import format_arch
    from .counting import count
    from .spaces import get_space

    sp = get_space(args.space)
    if not 1 <= args.n <= MAX_SAMPLE:
        raise UsageError(f"-n: expected 1 to {MAX_SAMPLE:,} architectures, got {args.n}")
    rng = np.random.default_rng(args.seed)
    rows = []
    for idx in sp.sample_indices(rng, args.n):
        a = sp.to_arch(idx)
        c = count(a)
        rows.append({"arch": format_arch(a), "indices": [int(v) for v in idx],
                     "params": c.params, "madds": c.madds})
    if args.json:
        print_json(rows)
    elif args.table:
        print(f"{'params':>10} {'MAdds':>9}  architecture")
        for r in rows:
            print(f"{r['params']:>10,} {r['madds'] / 1e6:8.1f}M  {r['arch']}")
    else:  # one string a line: what --archs FILE and mnas predict read
        for r in rows:
            print(r["arch"])
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "a non-negative integer")


#: the most networks ``mnas space sample -n`` draws in one call
MAX_SAMPLE = 1_000_000
#: the largest random seed numpy's generators take (``--seed``)
MAX_SEED = 2 ** 32 - 1


def sample_count(text: str) -> int:
    """argparse type: how many networks to draw, 1 .. :data:`MAX_SAMPLE`."""
    what = f"a positive integer, at most {MAX_SAMPLE:,}"
    v = _int_at_least(text, 1, what)
    if v > MAX_SAMPLE:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def seed_int(text: str) -> int:
    """argparse type: a random seed, 0 .. 2**32-1 (what numpy accepts)."""
    what = f"a seed from 0 to 2**32-1 ({MAX_SEED})"
    v = _int_at_least(text, 0, what)
    if v > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def _file_above(path: str) -> str | None:
    """The nearest existing ancestor of absolute ``path`` (itself included) when it is not a
    folder, else None."""
    import os

    probe = path
    while True:
        if os.path.exists(probe):
            return None if os.path.isdir(probe) else probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent


def output_dir(text: str) -> str:
    """argparse type: a folder to write into (it may not exist yet).

    Refused when the path is a file, or when a file stands where one of its parent
    folders would be (``--out results.csv/x``): nothing could be written there.
    """
    import os

    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r}")
    path = os.path.abspath(os.path.expanduser(text))
    blocker = _file_above(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"lies under the file {blocker}"
        raise argparse.ArgumentTypeError(f"expected a folder, but {text!r} {what}")
    return text


def output_file(text: str) -> str:
    """argparse type: a file to write (it may not exist yet; its folder may not either).

    Refused when the path is a folder or lies under a file.
    """
    import os

    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"expected a file, but {text!r} is a folder")
    blocker = _file_above(os.path.dirname(path))
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"expected a file path, but {text!r} lies under the "
                                         f"file {blocker}")
    return text


def _int_at_least(text: str, lo: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < lo:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``arch`` and ``space`` to the root parser's subcommands."""
    from .spaces import space_names

    p = sub.add_parser("arch", help="show reference or written architectures")
    asub = p.add_subparsers(dest="arch_cmd", required=True, parser_class=OneLineParser)
    s = asub.add_parser("show", help="params, MAdds and per-stage table")
    s.add_argument("arch", help="a reference name (mnas arch list), a variant of one "
                   "(mnasnet-a1@w0.75,r192) or an architecture string")
    add_variant_args(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_arch_show)
    s = asub.add_parser("list", help="the reference registry")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_arch_list)

    p = sub.add_parser("space", help="inspect and sample search spaces")
    ssub = p.add_subparsers(dest="space_cmd", required=True, parser_class=OneLineParser)
    s = ssub.add_parser("info", help="decisions, size, operator configurations")
    s.add_argument("space", choices=space_names(), help="search space")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_space_info)
    s = ssub.add_parser("sample", help="random architectures of a space, one string a line "
                                       "(readable by --archs FILE and mnas predict)")
    s.add_argument("space", choices=space_names(), help="search space")
    s.add_argument("-n", type=sample_count, default=5,
                   help=f"how many to draw (at most {MAX_SAMPLE:,})")
    s.add_argument("--seed", type=seed_int, default=0, help="random seed (0 to 2**32-1)")
    view = s.add_mutually_exclusive_group()
    view.add_argument("--table", action="store_true", help="print params, MAdds and string")
    view.add_argument("--json", action="store_true", help="print JSON (strings, indices, counts)")
    s.set_defaults(func=_cmd_space_sample)
