"""How engine names become engines: `auto`'s choice, refusals, and loading the engine's module.

The table itself (rows, flavours, precisions) is table.py, which imports none of the engines;
this package loads an engine's module by its row, only when that engine is used, and engine
modules never import this package back (tests/test_layers.py follows these importlib loads).

`auto` tries the rows flagged for it in table order and takes the first that can serve the model
here (a cached TensorRT engine built for this model and GPU, then onnxruntime's CUDA provider,
then OpenVINO in bf16 where the CPU multiplies bf16 natively and the model passed its accuracy
guard, then onnxruntime on the CPU), and says which. A named engine that cannot start raises EngineUnavailableError,
never silently falling back.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from .table import AUTO, CHOICES, ROWS, TABLE, EngineRow, Flavour, Precision, engine_row

if TYPE_CHECKING:
    from .base import Engine


def _module(row: EngineRow):
    return importlib.import_module(f"{__name__}.{row.module}")


def resolve_engine(name: str, model: Path) -> tuple[str, Path]:
    """(concrete engine name, file to load) for an engine name or `auto` and a model file."""
    from ...errors import EngineUnavailableError

    if name == AUTO:
        for row in TABLE:
            if row.in_auto and model.suffix in row.suffixes:
                found = _module(row).locate(row.name, model)
                if found is not None:
                    return row.name, found
        raise EngineUnavailableError(f"no engine on this machine can run {model}")
    row = engine_row(name)
    if model.suffix not in row.suffixes:
        takers = [r.name for r in TABLE if model.suffix in r.suffixes]
        hint = f"use --engine {' or '.join([*takers, AUTO])}" if takers else "give an .onnx model"
        raise EngineUnavailableError(f"{model} is a {model.suffix or 'suffix-less'} file, which engine {name!r} "
                                     f"cannot run: {hint}")
    return name, _module(row).locate(row.name, model) or model


def open_engine(model: str | Path, engine: str = "cpu", threads: int | None = None) -> Engine:
    """Load `model` on the named engine (or `auto`); raise EngineUnavailableError if it cannot start."""
    name, path = resolve_engine(engine, Path(model))
    return _module(ROWS[name]).load(name, path, threads)


__all__ = ["AUTO", "CHOICES", "ROWS", "TABLE", "EngineRow", "Flavour", "Precision", "engine_row", "open_engine",
           "resolve_engine"]
