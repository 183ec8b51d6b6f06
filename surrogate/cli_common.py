"""What the CLI modules of :mod:`surrogate` share: profile names and files of architectures."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

__all__ = ["add_profile_arg", "add_space_arg", "archs_from_file", "predict_profile_names", "profile_names",
           "read_text_file"]


def profile_names() -> list[str]:
    """The measuring device profiles (surrogate.measure.profiles)."""
    from .measure.profiles import PROFILES

    return list(PROFILES)


def predict_profile_names() -> list[str]:
    """Measuring profiles, then the predict-only devices of :mod:`surrogate.predict.zoo`."""
    from .predict.zoo import published_names

    return profile_names() + [n for n in published_names() if n not in profile_names()]


def read_text_file(path: str | Path, option: str, holds: str) -> str:
    """The UTF-8 text of the file given to ``option``; a missing, folder, unreadable or
    binary file is one error naming ``option`` and the file (``holds``: what it should
    hold, for the message)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} file {path} is a folder; expected a text file of {holds}")
    if not path.is_file():
        raise FileNotFoundError(f"{option} file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{option} file {path} is not a UTF-8 text file of {holds}") from None
    except OSError as exc:
        raise ValueError(f"{option} file {path} cannot be read ({exc.strerror or exc})") from None
    if "\0" in text:
        raise ValueError(f"{option} file {path} is not a text file of {holds} (it holds NUL bytes)")
    return text


def archs_from_file(archs: str, sp=None, option: str = "--archs") -> list:
    """(arch, source) pairs from a file of architecture strings or reference names.

    One per line, ``#`` starts a comment; with a space ``sp`` each is canonicalised
    in it (a non-member is an error naming file and line). ``option``: the command-line
    option that named the file, for the messages.
    """
    from space.reference import resolve_arch

    path = Path(archs)
    text = read_text_file(path, option, "architecture strings or names, one a line")
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            a = resolve_arch(line)  # a name, a variant (name@w0.75,r192) or a string
            if sp is not None:
                a = sp.to_arch(sp.from_arch(a))
        except ValueError as exc:
            raise ValueError(f"{option} file {path}:{lineno}: {exc}") from None
        out.append((a, f"file:{path.name}"))
    if not out:
        raise ValueError(f"{option} file {path} holds no architectures (expected one string "
                         f"or name a line)")
    return out


def add_profile_arg(p, *, default: str | None = None, required: bool = False,
                    predict_only: bool = False, help: str = "device profile") -> None:
    """``--profile``: the measuring profiles, or with ``predict_only`` also the published devices."""
    names = predict_profile_names() if predict_only else profile_names()
    kw = {"required": True} if required else {"default": default}
    p.add_argument("--profile", choices=names, help=help, **kw)


def add_space_arg(p, *, default: str | None = None, required: bool = False,
                  help: str = "search space") -> None:
    """``--space``: one of the registered search spaces."""
    from space.spaces import space_names

    kw = {"required": True} if required else {"default": default}
    p.add_argument("--space", choices=space_names(), help=help, **kw)


def arch_ms_rows(rows: list, cols: list, path) -> "Iterator[tuple[int, str, str]]":
    """(line, arch, ms text) of the data rows of an ``arch,ms`` CSV; blank and ``#`` lines
    skipped; an unquoted architecture string's commas rejoined; a wrong field count is a
    ``ValueError`` naming file and line."""
    ia, im = cols.index("arch"), cols.index("ms")
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) > len(cols) and cols == ["arch", "ms"]:  # an unquoted string's commas
            row = [",".join(row[:-1]), row[-1]]
        if len(row) != len(cols):
            raise ValueError(f"{path}:{lineno}: {len(row)} fields for the {len(cols)} columns "
                             f"{', '.join(cols)} (quote architecture strings that hold commas)")
        yield lineno, row[ia].strip(), row[im].strip()
