"""Tests of the scripts in benchmarks/ (not a package: imported as the scripts import each other)."""

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    """Import benchmarks/<name>.py with benchmarks/ on the path, as running the script does."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    return importlib.import_module(name)
