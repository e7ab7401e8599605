"""The layering of docs/ARCHITECTURE.md, checked on the source: no module imports upward, no import loop.

Every import in samcell_rt (module level or inside functions, absolute or relative, and loads
through importlib.import_module or __import__) is resolved to a package part; each part may
import only the parts listed for it.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
from pathlib import Path

import pytest

import samcell_rt

ROOT = Path(samcell_rt.__file__).parent
BASE = {"errors", "cache", "__init__"}
ANYWHERE = {"version"}  # parts every part may import (they import nothing)
ALLOWED = {  # part -> parts it may import (besides itself)
    "errors": set(),
    "cache": set(),
    "runtime": {"errors", "cache"},
    "runs": {"errors", "cache", "runtime"},
    "reports": {"errors", "runtime", "runs"},
    "shipped": {"errors", "cache", "runtime"},
    "registry": {"errors", "cache", "runtime", "export", "shipped"},
    "apps": {"errors", "cache", "runtime", "runs", "reports", "registry", "package_files", "__init__"},
    "export": {"errors", "cache", "runtime", "package_files", "synthetic", "shipped"},
    "train": {"errors", "cache", "runtime", "export", "package_files", "synthetic", "registry", "shipped", "evaluate"},
    "package_files": {"errors", "runtime"},
    "synthetic": {"runtime"},
    "evaluate": {"errors", "runtime"},
    "baseline": {"errors", "runtime"},
    "machine": {"runtime"},
    "benchmark": {"errors", "runtime", "registry", "machine", "synthetic", "export"},
    "__init__": {"registry", "runtime"},
    "cli": set(BASE) | {"runtime", "runs", "reports", "apps", "registry", "export", "train", "evaluate", "benchmark",
                        "package_files"},
}


def part_of(module: str) -> str:
    """'samcell_rt.runs.folders' -> 'runs'; 'samcell_rt' -> '__init__'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def module_name(path: Path, root: Path = ROOT) -> str:
    """samcell_rt/runs/folders.py -> 'samcell_rt.runs.folders'; a package's __init__ -> the package."""
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules_of(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at `root`, by dotted name."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _absolute(name: str, package: str) -> str:
    """`name` as an absolute module name; a leading dot counts from `package`, as importlib does."""
    dots = len(name) - len(name.lstrip("."))
    if not dots:
        return name
    base = ".".join(package.split(".")[: len(package.split(".")) - dots + 1])
    return f"{base}.{name[dots:]}" if name[dots:] else base


def _dunder(node: ast.AST, module: str, package: str) -> str | None:
    """The value of `__name__` or `__package__` inside `module`, else None."""
    if isinstance(node, ast.Name):
        return {"__name__": module, "__package__": package}.get(node.id)
    return None


def dynamic_loads(tree: ast.Module, module: str, package: str, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that `importlib.import_module(...)` or `__import__(...)` calls in `tree` may load.

    A literal names its module; an f-string with a known start (`f"{__name__}.{row.module}"`) may load
    any module whose name begins so (the unknown rest is a wildcard); any other argument (a name read
    from a table) may load every module that a string literal of the file names in full, which is how
    a table of module names is seen.
    """
    named = {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)} & set(modules)
    found: set[str] = set()
    for call in ast.walk(tree):
        func = getattr(call, "func", None)
        called = getattr(func, "attr", None) or getattr(func, "id", None)
        if not isinstance(call, ast.Call) or called not in ("import_module", "__import__") or not call.args:
            continue
        anchor = package
        if len(call.args) > 1:
            second = call.args[1]
            anchor = second.value if isinstance(second, ast.Constant) else _dunder(second, module, package) or package
        arg = call.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found |= {_absolute(arg.value, anchor)} & set(modules)
        elif isinstance(arg, ast.JoinedStr) and (start := _known_start(arg, module, package)):
            found |= set(fnmatch.filter(modules, _absolute(start + "*", anchor))) - {module}
        else:
            found |= named
    return found


def _known_start(arg: ast.JoinedStr, module: str, package: str) -> str:
    """The leading part of an f-string that is known from the source alone."""
    start = ""
    for value in arg.values:
        if isinstance(value, ast.Constant):
            start += str(value.value)
        elif isinstance(value, ast.FormattedValue) and (known := _dunder(value.value, module, package)):
            start += known
        else:
            break
    return start


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Modules (and names of modules) of the package a source file imports, lazily, eagerly or through importlib.
    `from package import name` counts as an import of `package.name` when that is a module, else of the package."""
    modules = modules_of(root)
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = dynamic_loads(tree, module, package, modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute("." * node.level + (node.module or ""), package)
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
    return {name for name in found if name.split(".")[0] == root.name}


def graph() -> dict[str, set[str]]:
    """part -> parts it imports."""
    edges: dict[str, set[str]] = {}
    for module, path in modules_of().items():
        edges.setdefault(part_of(module), set()).update(part_of(m) for m in imports(path))
    return edges


def test_no_module_imports_upward():
    problems = [f"{source} imports {target}" for source, targets in graph().items()
                for target in targets - {source} - ANYWHERE if target not in ALLOWED.get(source, set())]
    assert not problems, problems


def test_the_runtime_knows_nothing_of_folders_http_or_registries():
    for path in (ROOT / "runtime").rglob("*.py"):
        assert not {part_of(m) for m in imports(path)} & {"runs", "apps", "registry", "cli"}, path


def test_the_readme_documents_every_engine_of_the_table():
    from samcell_rt.runtime.engines import TABLE

    readme = (ROOT.parent / "README.md").read_text()
    missing = [row.name for row in TABLE if f"| `{row.name}`" not in readme]
    assert not missing, f"README engine table lacks {missing}"


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> modules of the package it imports, lazily, eagerly or through importlib."""
    modules = modules_of(root)
    return {module: {m for m in imports(path, root) if m in modules and m != module} for module, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_a_planted_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def loop_edges(edges: dict[str, set[str]]) -> list[str]:
    """Each loop's imports, 'a -> b', for a message that says which import to change."""
    return [f"{source} -> {target}" for loop in cycles(edges) for source in loop
            for target in sorted(edges[source] & set(loop))]


def test_no_module_imports_another_that_imports_it_back():
    """No import loop between modules, lazy imports and importlib loads included: each module can be read
    before those that use it. (An engine module imports engines/table.py, never the package that loads it.)"""
    assert not cycles(module_graph()), loop_edges(module_graph())


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    return root


LOADER = "import importlib\nfrom .table import ROWS\n\ndef load(row):\n    return {call}\n"


@pytest.mark.parametrize("call", ['importlib.import_module(f"{__name__}.{row}")',
                                  'importlib.import_module(f".{row}", __name__)',
                                  'importlib.import_module(f"{__package__}.{row}")'])
def test_a_loop_through_an_importlib_load_is_found(tmp_path, call):
    """A package that loads its engine modules by name, and an engine that imports the package back."""
    root = _package(tmp_path / "pkg", {"__init__.py": LOADER.format(call=call), "table.py": "ROWS = ('eng',)\n",
                                       "eng.py": "from . import ROWS\n", "other.py": "from .table import ROWS\n"})
    edges = module_graph(root)
    assert edges["pkg"] == {"pkg.eng", "pkg.other", "pkg.table"}  # what the f-string may name: any module under pkg
    assert cycles(edges) == [["pkg", "pkg.eng"]]
    (root / "eng.py").write_text("from .table import ROWS\n")  # the engine reads the table instead: no loop
    assert cycles(module_graph(root)) == []


@pytest.mark.parametrize("loader", ['importlib.import_module("pkg.eng")', 'importlib.import_module(".eng", "pkg")',
                                    '__import__("pkg.eng")',
                                    '[importlib.import_module(name) for name in ("pkg.eng", "json")]'])
def test_literal_and_table_loads_are_followed(tmp_path, loader):
    """Literal names, relative ones with their package, and a table of full names each give an edge; the
    third-party name in the table gives none."""
    root = _package(tmp_path / "pkg", {"__init__.py": "", "eng.py": "import pkg.use\n",
                                       "use.py": f"import importlib\n\ndef go():\n    {loader}\n"})
    assert module_graph(root)["pkg.use"] == {"pkg.eng"}
    assert cycles(module_graph(root)) == [["pkg.eng", "pkg.use"]]


def test_the_readme_layout_names_every_module():
    """README's package-layout table stays in step with the tree: every module and package is named in it."""
    readme = (ROOT.parent / "README.md").read_text()
    section = readme[readme.index("## Package layout"):readme.index("## Model contract")]
    missing = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*.py")
               if path.name != "__init__.py" and f"`{path.name}`" not in section]
    missing += [str(path.relative_to(ROOT)) for path in ROOT.iterdir()
                if path.is_dir() and (path / "__init__.py").exists() and f"`{path.name}/`" not in section]
    assert not missing, f"README's package layout does not name {missing}"
