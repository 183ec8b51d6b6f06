"""The ``mnas`` console script: assembles the verbs of space/, surrogate/ and search/."""
from __future__ import annotations

import sys

from space.cli import OneLineParser, UsageError

_USER_ERRORS = (UsageError, ValueError, FileNotFoundError)


def build_parser() -> OneLineParser:
    """The root parser with every package's verbs."""
    import space
    from space import cli as space_cli

    parser = OneLineParser(prog="mnas", description="mnas-surrogate: measured-latency NAS")
    parser.add_argument("--version", action="version", version=f"mnas-surrogate {space.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    space_cli.register(sub)
    try:
        from surrogate import cli as surrogate_cli
    except ImportError:  # pragma: no cover - surrogate verbs not present
        surrogate_cli = None
    if surrogate_cli is not None and hasattr(surrogate_cli, "register"):
        surrogate_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _USER_ERRORS as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mnas: error: {msg}" if not msg.startswith("mnas") else msg, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("mnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
