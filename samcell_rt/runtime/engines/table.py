"""The engine table, TensorRT flavours and precisions: plain data that imports none of the engines.

Each row names the module that loads the engine (imported only when used, by the package), the
tiles per engine call when the caller does not say, whether the segmenter pipelines around it
(prepares and post-processes on helper threads while a GPU runs), whether `auto` may take it,
which model files it takes, and what it needs. The CLI's choices, `auto`'s order, the README's
engine list, resolution and the engines' own batch and pipelining all read this table, so a new
engine is one new row plus its module. Engine modules import this module, never the package
that loads them, so loading an engine cannot loop back through the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

AUTO = "auto"


class Precision(StrEnum):
    """What a graph or engine computes in: the `samcell.precision` metadata value and `--precision`."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Flavour(StrEnum):
    """The TensorRT library that built an engine file (its header's `flavour`)."""

    TENSORRT = "tensorrt"  # the full TensorRT: builds on, and runs only on, one GPU model
    RTX = "tensorrt-rtx"  # TensorRT for RTX: builds anywhere for a list of compute capabilities


@dataclass(frozen=True)
class EngineRow:
    """One row of the engine table."""

    name: str
    module: str  # module under samcell_rt.runtime.engines with `load(name, path, threads)` and `locate(name, model)`
    # Tiles per call. CPU: 1 (batching gains nothing, a ViT-B batch costs GBs); GPUs want full batches.
    # None: the engine's own largest batch (a TensorRT engine is built for a batch range, see trt_header.py).
    default_batch: int | None
    pipelined: bool
    in_auto: bool
    suffixes: tuple[str, ...]  # model files it takes
    needs: str  # what to install, for error messages and docs


TABLE: tuple[EngineRow, ...] = (
    EngineRow("tensorrt", "tensorrt", None, True, True, (".engine", ".onnx"),
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
    from ...errors import EngineUnavailableError  # the error family only: nothing of the engines

    if name not in ROWS:
        raise EngineUnavailableError(f"unknown engine {name!r}; choose from {', '.join(CHOICES)}")
    return ROWS[name]
