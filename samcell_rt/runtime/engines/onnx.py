"""onnxruntime engine: CPU, CUDA and TensorRT execution providers behind the engine protocol."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import EngineUnavailableError, ModelError
from ..contract import INPUT_NAME, META_KEYS, OUTPUT_NAME, ModelInfo, check_io
from .table import Precision, engine_row

# The one place where engine names map to onnxruntime providers.
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def default_threads() -> int:
    """Threads for one session: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def available(engine: str) -> bool:
    """Whether onnxruntime on this machine offers the provider behind `engine`."""
    import onnxruntime as ort

    return PROVIDERS[engine][0] in ort.get_available_providers()


def locate(engine: str, model: Path) -> Path | None:
    """The model itself when onnxruntime here offers the engine's provider (always for cpu), else None."""
    return model if engine == "cpu" or available(engine) else None


def load(engine: str, path: Path, threads: int | None) -> OnnxEngine:
    """The engine table's loader."""
    return OnnxEngine(path, engine, threads)


class OnnxEngine:
    """An onnxruntime session for one model file; `run` is thread-safe (onnxruntime guarantees it)."""

    max_batch: int | None = None

    def __init__(self, path: str | Path, engine: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.name = engine
        path = Path(path)
        row = engine_row(engine)
        self.default_batch, self.pipelined = row.default_batch, row.pipelined
        if engine not in PROVIDERS:
            raise EngineUnavailableError(f"engine {engine!r} does not run on onnxruntime")
        if not available(engine):
            raise EngineUnavailableError(
                f"engine {engine!r} needs onnxruntime's {PROVIDERS[engine][0]}, which this installation lacks "
                f"(needs {row.needs}; or use --engine cpu)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=PROVIDERS[engine])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(path, f"onnxruntime cannot load it ({exc})") from exc
        if self.session.get_providers()[0] != PROVIDERS[engine][0]:
            raise EngineUnavailableError(f"engine {engine!r} could not start; onnxruntime fell back to "
                                         f"{self.session.get_providers()[0]}")
        props = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_props(path, props)
        self.precision = props.get(META_KEYS["precision"], Precision.FP32)  # onnxruntime runs the graph as exported
        self._check_io(path)

    def _check_io(self, path: Path) -> None:
        types = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}
        inputs = [(i.name, types.get(i.type, i.type), [d if isinstance(d, int) else None for d in i.shape])
                  for i in self.session.get_inputs()]
        outputs = [(o.name, types.get(o.type, o.type)) for o in self.session.get_outputs()]
        check_io(path, self.info.tile, inputs, outputs)

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Distance maps (B, 1, T, T) float32 for uint8 tiles (B, 1, T, T)."""
        (maps,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(tiles, dtype=np.uint8)})
        return maps
