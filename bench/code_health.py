"""The code-structure figures of one-owner-per-concept work, for a tree (this one or another).

Counted from the source: ``get_profile(`` call sites, modules over 500 lines, functions
over 80 lines, README lines, development-history phrases ("session N") in README, docs,
the packages and bench scripts. From the workplace tools when they are installed:
``farm-studio look`` (circles, arrows back up) and ``walk`` of ``_cmd_sweep``'s ``args``,
and ``duplicates`` pairs of 6+ lines inside the packages.

    python bench/code_health.py [--root DIR] [--name code_health]
"""
from __future__ import annotations

import ast
import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import base_parser, md_table, write_results  # noqa: E402

PACKAGES = ("space", "surrogate", "search")
HISTORY = re.compile(r"\bsessions? [0-9]+\b|\bthis session\b|\blast session\b", re.I)


def _py(root: Path) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def source_figures(root: Path) -> dict:
    """Figures read from the files alone."""
    calls, big, long_fns = 0, [], []
    for p in _py(root):
        text = p.read_text(encoding="utf-8")
        calls += len(re.findall(r"(?<!def )\bget_profile\(", text))
        n = text.count("\n")
        if n > 500:
            big.append(f"{p.relative_to(root)} ({n})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_fns.append(f"{p.relative_to(root)}:{node.name} ({length})")
    hist = []
    files = [root / "README.md", *(root / "docs").glob("*.md"), *_py(root), *(root / "bench").glob("*.py")]
    for f in files:
        if f.is_file() and f.name != Path(__file__).name:
            hist += [f"{f.relative_to(root)}:{i}" for i, line in
                     enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if HISTORY.search(line)]
    readme = root / "README.md"
    return {"get_profile_call_sites": calls, "modules_over_500": big, "functions_over_80": long_fns,
            "readme_lines": readme.read_text(encoding="utf-8").count("\n") if readme.is_file() else None,
            "history_mentions": hist}


def _tool(cmd: list[str], root: Path) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300).stdout


def tool_figures(root: Path) -> dict:
    """Figures from ``farm-studio`` and ``duplicates`` (None when the tool is absent)."""
    out: dict = {}
    look = _tool(["farm-studio", "look"], root)
    if look:
        for key in ("circles", "arrows that run back up"):
            m = re.search(rf'"{key}": (\d+)', look)
            out[key] = int(m.group(1)) if m else None
    walk = _tool(["farm-studio", "walk", "search/cli.py:_cmd_sweep:args"], root)
    m = re.search(r"(\d+) stays; (\d+) rooms; (\d+) climbs back up", walk or "")
    out["walk"] = {"stays": int(m[1]), "rooms": int(m[2]), "climbs": int(m[3]),
                   "cut_off": "CUT OFF" in (walk or "")} if m else None
    dup = _tool(["duplicates", "--most", "60"], root)
    if dup is not None:
        pat = re.compile(r"^D\d+ (space|surrogate|search)/\S* ~ (space|surrogate|search)/", re.M)
        rows = [line for line in dup.splitlines() if pat.match(line)]
        out["duplicate_pairs_in_packages"] = len(rows)
        out["duplicate_pairs_exact"] = sum("shape" not in r for r in rows)
    return out


def main() -> None:
    ap = base_parser(__doc__.split("\n")[0])
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="the tree to read")
    ap.add_argument("--name", default="code_health", help="result file name")
    args = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    root = Path(args.root).resolve()
    res = {**source_figures(root), **tool_figures(root)}
    walk = res.get("walk") or {}
    rows = [["get_profile( call sites", res["get_profile_call_sites"]],
            ["modules over 500 lines", len(res["modules_over_500"])],
            ["functions over 80 lines", len(res["functions_over_80"])],
            ["README lines", res["readme_lines"]],
            ["history mentions", len(res["history_mentions"])],
            ["circles / arrows back up", f"{res.get('circles')} / {res.get('arrows that run back up')}"],
            ["walk of _cmd_sweep args (stays / rooms / climbs)",
             f"{walk.get('stays')}{'+' if walk.get('cut_off') else ''} / {walk.get('rooms')} / {walk.get('climbs')}"],
            ["duplicate pairs in the packages (exact)",
             f"{res.get('duplicate_pairs_in_packages')} ({res.get('duplicate_pairs_exact')})"]]
    md = f"# Code structure of {root.name}\n\n" + md_table(["figure", "value"], rows)
    write_results(args.name, {"root": str(root), **res}, md, args.out, config=vars(args), started=started)


if __name__ == "__main__":
    main()
