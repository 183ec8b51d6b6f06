"""The import graph of ``space``, ``surrogate`` and ``search``: no circles, no upward imports.

The graph is read with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` anywhere in a file (module level, inside functions, under
``if TYPE_CHECKING:``), relative imports resolved, and ``importlib.import_module`` /
``__import__`` calls with a literal module name. An edge goes to the module named
(``from pkg import name`` to ``pkg.name`` when that is a module, else to ``pkg``).
Layering: ``space`` < ``surrogate`` < ``search``; a package imports nothing above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("space", "surrogate", "search")  # lowest first


def module_files(root: Path, packages: tuple[str, ...] = LAYERS) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``packages`` of ``root``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _literal_import_call(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules (of ``known``) that a parsed file imports."""
    package = module if is_package else module.rpartition(".")[0]

    def resolve(name: str, level: int) -> str:
        if not level:
            return name
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    def deepest(name: str) -> str:  # module.attribute -> module
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(deepest(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module or "", node.level)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else deepest(base))
        elif isinstance(node, ast.Call):
            name = _literal_import_call(node)
            if name:
                found.add(deepest(resolve(name.lstrip("."), len(name) - len(name.lstrip(".")))))
    return found - {"", module}


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = module_files(root)
    known = set(files)
    return {mod: _imported(ast.parse(path.read_text(), str(path)), mod,
                           path.name == "__init__.py", known)
            for mod, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _file(mod: str, files: dict[str, Path]) -> str:
    return str(files[mod].relative_to(REPO))


def _layer(mod: str) -> int:
    return LAYERS.index(mod.split(".")[0])


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_circles(graph, package):
    files = module_files(REPO)
    found = [c for c in circles(graph) if any(m.split(".")[0] == package for m in c)]
    report = ["circle: " + ", ".join(_file(m, files) for m in c) + "  ("
              + "; ".join(f"{_file(a, files)} -> {_file(b, files)}"
                          for a in c for b in sorted(graph[a]) if b in c) + ")"
              for c in found]
    assert not found, f"{len(found)} import circle(s) touching {package}/:\n" + "\n".join(report)


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_no_imports_from_a_higher_package(graph, package):
    files = module_files(REPO)
    bad = [f"{_file(a, files)} -> {_file(b, files)}" for a in sorted(graph) for b in sorted(graph[a])
           if a.split(".")[0] == package and _layer(b) > _layer(a)]
    assert not bad, (f"{package}/ imports from a higher package (layers: {' < '.join(LAYERS)}):\n"
                     + "\n".join(bad))


def test_graph_sees_relative_local_and_importlib_imports(tmp_path):
    """The reader itself, on a small tree: each kind of import makes its edge."""
    (tmp_path / "space" / "sub").mkdir(parents=True)
    (tmp_path / "surrogate").mkdir()
    (tmp_path / "search").mkdir()
    files = {
        "space/__init__.py": "from .a import A\n",
        "space/a.py": "A = 1\n",
        "space/b.py": "def f():\n    from . import a\n    from .sub.c import C\n",
        "space/sub/__init__.py": "",
        "space/sub/c.py": "from ..a import A\nfrom space import b\nC = 2\n",
        "surrogate/__init__.py": "",
        "surrogate/x.py": "import importlib\nm = importlib.import_module('search.y')\n"
                          "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import space.a\n",
        "search/__init__.py": "",
        "search/y.py": "import os\nimport space.sub.c as c\n__import__('surrogate')\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    g = import_graph(tmp_path)
    assert g["space"] == {"space.a"}
    assert g["space.b"] == {"space.a", "space.sub.c"}
    assert g["space.sub.c"] == {"space.a", "space.b"}
    assert g["surrogate.x"] == {"search.y", "space.a"}
    assert g["search.y"] == {"space.sub.c", "surrogate"}
    assert circles(g) == [["space.b", "space.sub.c"]]
