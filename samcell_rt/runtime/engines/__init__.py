"""Engine selection: by name, or `auto` (TensorRT -> CUDA -> CPU), never silently falling back.

`auto` takes a native TensorRT engine only when one built for this model and valid on this GPU
with an installed flavour (full TensorRT preferred, else TensorRT-RTX) is in the cache
(`samcell-rt build-engine` makes one), then onnxruntime's CUDA provider, then the CPU. A named
engine that cannot start raises EngineUnavailableError. Engine name `tensorrt` covers both
flavours: the engine file's header says which library loads it.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import EngineUnavailableError
from .. import ENGINES
from .base import Engine


def cached_trt_engine(model: Path) -> Path | None:
    """A cached TensorRT engine valid for `model` on this machine, or None."""
    from . import tensorrt as trt_engine
    from .trt_header import find_cached_engine

    if model.suffix == ".engine":
        return model
    if not trt_engine.available():
        return None
    from ..contract import file_sha256

    gpu, capability = trt_engine.device_facts()
    return find_cached_engine(file_sha256(model), gpu, capability, trt_engine.installed_flavours())


def resolve_engine(name: str, model: Path) -> tuple[str, Path]:
    """(concrete engine name, file to load) for an engine name and a model file."""
    from . import onnx

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    if model.suffix == ".engine":
        if name not in ("auto", "tensorrt"):
            raise ValueError(f"{model} is a TensorRT engine: use --engine tensorrt or auto")
        return "tensorrt", model
    if name == "tensorrt":
        engine = cached_trt_engine(model)
        if engine is None:
            raise EngineUnavailableError(f"no TensorRT engine for {model} on this machine: build one with "
                                         f"`samcell-rt build-engine {model}` (extra 'tensorrt-rtx' builds anywhere, for RTX "
                                         "GPUs; extra 'tensorrt' on the target GPU)")
        return "tensorrt", engine
    if name != "auto":
        return name, model
    engine = cached_trt_engine(model)
    if engine is not None:
        return "tensorrt", engine
    return ("cuda" if onnx.available("cuda") else "cpu"), model


def open_engine(model: str | Path, engine: str = "cpu", threads: int | None = None) -> Engine:
    """Load `model` on the named engine; raise EngineUnavailableError if it cannot start."""
    name, path = resolve_engine(engine, Path(model))
    if name == "tensorrt":
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path)
    from .onnx import OnnxEngine

    return OnnxEngine(path, name, threads=threads)


__all__ = ["ENGINES", "Engine", "open_engine", "resolve_engine"]
