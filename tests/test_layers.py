"""The layering of DESIGN.md, checked on the source: no module imports upward.

Every import in samcell_rt (module level or inside functions, absolute or relative) is resolved
to a package part; each part may import only the parts listed for it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import samcell_rt

ROOT = Path(samcell_rt.__file__).parent
BASE = {"errors", "cache", "__init__"}
ANYWHERE = {"version"}  # parts every part may import (they import nothing)
ALLOWED = {  # part -> parts it may import (besides itself)
    "errors": set(),
    "cache": set(),
    "runtime": {"errors", "cache"},
    "runs": {"errors", "cache", "runtime"},
    "shipped": {"errors", "cache", "runtime"},
    "registry": {"errors", "cache", "runtime", "export", "shipped"},
    "apps": {"errors", "cache", "runtime", "runs", "registry", "package_files", "__init__"},
    "export": {"errors", "cache", "runtime", "package_files", "synthetic", "shipped"},
    "train": {"errors", "cache", "runtime", "export", "package_files", "synthetic", "registry", "shipped", "evaluate"},
    "package_files": {"errors", "runtime"},
    "synthetic": {"runtime"},
    "evaluate": {"errors", "runtime"},
    "baseline": {"errors", "runtime"},
    "machine": {"runtime"},
    "benchmark": {"errors", "runtime", "registry", "machine", "synthetic", "export"},
    "__init__": {"registry", "runtime"},
    "cli": set(BASE) | {"runtime", "runs", "apps", "registry", "export", "train", "evaluate", "benchmark", "package_files"},
}


def part_of(module: str) -> str:
    """'samcell_rt.runs.folders' -> 'runs'; 'samcell_rt' -> '__init__'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Absolute samcell_rt module names a source file imports."""
    package = ".".join(("samcell_rt", *path.relative_to(ROOT).with_suffix("").parts))
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0]
    parent = package if path.name == "__init__.py" else package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("samcell_rt")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parent.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("samcell_rt"):
                found.add(module)
    return found


def graph() -> dict[str, set[str]]:
    """part -> parts it imports."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        module = ".".join(("samcell_rt", *path.relative_to(ROOT).with_suffix("").parts))
        source = part_of(module.removesuffix(".__init__")) if path.name != "__init__.py" or path.parent != ROOT else "__init__"
        edges.setdefault(source, set()).update(part_of(m) for m in imports(path))
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


def module_name(path: Path) -> str:
    """samcell_rt/runs/folders.py -> 'samcell_rt.runs.folders'; a package's __init__ -> the package."""
    parts = ("samcell_rt", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """module -> samcell_rt modules it imports, lazily or not. `from package import name` counts as an
    import of `package.name` when that is a module, else of the package."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            targets |= {n for n in names if n in modules and n != module}
        edges[module] = targets
    return edges


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


def test_no_module_imports_another_that_imports_it_back():
    """No import loop between modules, lazy imports included: each module can be read before those that use it."""
    assert not cycles(module_graph()), cycles(module_graph())


def test_the_readme_layout_names_every_module():
    """README's package-layout table stays in step with the tree: every module and package is named in it."""
    readme = (ROOT.parent / "README.md").read_text()
    section = readme[readme.index("## Package layout"):readme.index("## Model contract")]
    missing = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*.py")
               if path.name != "__init__.py" and f"`{path.name}`" not in section]
    missing += [str(path.relative_to(ROOT)) for path in ROOT.iterdir()
                if path.is_dir() and (path / "__init__.py").exists() and f"`{path.name}/`" not in section]
    assert not missing, f"README's package layout does not name {missing}"
