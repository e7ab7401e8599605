"""docs/ARCHITECTURE.md stays in step with the tree: it names every module, everything it names exists,
and its table of layers is the one tests/test_layers.py enforces."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layers import ALLOWED, ROOT

REPO = ROOT.parent
DOC = (REPO / "docs" / "ARCHITECTURE.md").read_text()
TOP = ("tests/", "benchmarks/", "docs/", "samcell_rt/")  # from the repository root; any other path: under samcell_rt/


def named_paths(text: str) -> set[str]:
    """Backticked paths in `text`: a name with a slash, or a Python file."""
    return {token for token in re.findall(r"`([\w./-]+)`", text) if "/" in token or token.endswith(".py")}


def where(name: str) -> Path:
    return REPO / name if name.startswith(TOP) else ROOT / name


def test_every_module_and_package_is_named():
    named = named_paths(DOC)
    missing = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
               if p.name != "__init__.py" and str(p.relative_to(ROOT)) not in named]
    missing += [f"{p.relative_to(ROOT)}/" for p in ROOT.rglob("*") if (p / "__init__.py").is_file()
                and f"{p.relative_to(ROOT)}/" not in named]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"


def test_every_path_named_exists():
    absent = sorted(name for name in named_paths(DOC) if not where(name).exists())
    assert not absent, f"docs/ARCHITECTURE.md names what does not exist: {absent}"


def _part(cell: str) -> str:
    return "__init__" if cell in ("__init__.py", "the package root") else cell.removesuffix(".py").rstrip("/")


def layer_table() -> dict[str, set[str]]:
    """part -> what it may import, from the document's table of layers."""
    section = DOC[DOC.index("## Layers"):DOC.index("## Module map")]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        allowed = set() if cells[2] == "nothing" else {_part(c.strip()) for c in cells[2].split(",")}
        for part in re.findall(r"`([\w./]+)`", cells[0]):
            table[_part(part)] = allowed
    return table


def test_the_layer_table_is_the_one_the_import_check_enforces():
    table = layer_table()
    table.pop("version")  # imports nothing, and every part may import it (ANYWHERE in test_layers.py)
    assert table == ALLOWED


def test_the_checks_see_a_stale_document():
    """The same checks on a document that lacks a module and names a missing one fail."""
    stale = DOC.replace("`runtime/tiling.py`", "`runtime/tiles.py`")
    assert "runtime/tiles.py" in named_paths(stale) and not where("runtime/tiles.py").exists()
    assert "runtime/tiling.py" not in named_paths(stale)
