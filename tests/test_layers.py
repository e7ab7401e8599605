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
ALLOWED = {  # part -> parts it may import (besides itself)
    "errors": set(),
    "cache": set(),
    "runtime": {"errors", "cache"},
    "runs": {"errors", "cache", "runtime"},
    "models": {"errors", "cache", "runtime", "export"},
    "apps": {"errors", "cache", "runtime", "runs", "models", "packaged", "__init__"},
    "export": {"errors", "cache", "runtime", "packaged", "synthetic", "__init__"},
    "train": {"errors", "cache", "runtime", "export", "packaged", "synthetic", "models", "evaluate"},  # adapt: registry, scores
    "packaged": {"runtime"},
    "synthetic": {"runtime"},
    "evaluate": {"runtime"},
    "baseline": {"runtime"},
    "machine": set(),
    "benchmark": {"errors", "runtime", "models", "machine", "synthetic", "export"},
    "__init__": {"models", "runtime"},
    "cli": set(BASE) | {"runtime", "runs", "apps", "models", "export", "train", "evaluate", "benchmark", "packaged"},
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
                for target in targets - {source} if target not in ALLOWED.get(source, set())]
    assert not problems, problems


def test_the_runtime_knows_nothing_of_folders_http_or_registries():
    for path in (ROOT / "runtime").rglob("*.py"):
        assert not {part_of(m) for m in imports(path)} & {"runs", "apps", "models", "cli"}, path


def test_the_readme_documents_every_engine_of_the_table():
    from samcell_rt.runtime.engines import TABLE

    readme = (ROOT.parent / "README.md").read_text()
    missing = [row.name for row in TABLE if f"| `{row.name}`" not in readme]
    assert not missing, f"README engine table lacks {missing}"
