"""The engine table: every inference engine in one import-free place, and how names become engines.

Each row names the module that loads the engine (imported only when used), the tiles per engine
call when the caller does not say, whether the segmenter pipelines around it (prepares and
post-processes on helper threads while a GPU runs), which model files it takes, and what it
needs. The CLI's choices, `auto`'s order, the README's engine list and resolution all read this
table, so a new engine is one new row plus its module.

`auto` tries the rows flagged for it in table order and takes the first that can serve the model
here (a cached TensorRT engine built for this model and GPU, then onnxruntime's CUDA provider,
then OpenVINO in bf16 where the CPU multiplies bf16 natively and the model passed its accuracy
guard, then onnxruntime on the CPU), and says which. A named engine that cannot start raises EngineUnavailableError,
never silently falling back.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Engine

AUTO = "auto"


@dataclass(frozen=True)
class EngineRow:
    """One row of the engine table."""

    name: str
    module: str  # module under samcell_rt.runtime.engines with `load(name, path, threads)` and `locate(name, model)`
    default_batch: int  # CPU: 1 (batching gains nothing, a ViT-B batch costs GBs); GPUs want full batches
    pipelined: bool
    in_auto: bool
    suffixes: tuple[str, ...]  # model files it takes
    needs: str  # what to install, for error messages and docs


TABLE: tuple[EngineRow, ...] = (
    EngineRow("tensorrt", "tensorrt", 8, True, True, (".engine", ".onnx"),
               "an engine from `samcell-rt build-engine`: extra 'tensorrt-rtx' builds anywhere for RTX GPUs, "
               "extra 'tensorrt' on the target GPU; cuda-python and an NVIDIA GPU to run it"),
    EngineRow("cuda", "onnx", 8, True, True, (".onnx",), "onnxruntime-gpu and an NVIDIA GPU (extra 'gpu')"),
    EngineRow("ort-tensorrt", "onnx", 8, True, False, (".onnx",),
               "onnxruntime-gpu with its TensorRT provider and an NVIDIA GPU (extra 'gpu')"),
    EngineRow("openvino", "openvino", 1, False, True, (".onnx",),
               "OpenVINO (extra 'openvino'); bf16 where the CPU has AMX or AVX512-BF16, else fp32"),
    EngineRow("cpu", "onnx", 1, False, True, (".onnx",), "onnxruntime (extra 'cpu')"),
)
ROWS = {row.name: row for row in TABLE}
CHOICES = (AUTO, *sorted(ROWS, key=lambda n: n != "cpu"))  # what users may type; cpu first after auto


def engine_row(name: str) -> EngineRow:
    """The table row for a concrete engine name."""
    from ...errors import EngineUnavailableError

    if name not in ROWS:
        raise EngineUnavailableError(f"unknown engine {name!r}; choose from {', '.join(CHOICES)}")
    return ROWS[name]


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


__all__ = ["AUTO", "CHOICES", "ROWS", "TABLE", "EngineRow", "engine_row", "open_engine", "resolve_engine"]
