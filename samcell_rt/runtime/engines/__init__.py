"""Engine selection: by name, or `auto` (TensorRT -> CUDA -> CPU), never silently falling back."""

from __future__ import annotations

from pathlib import Path

from .base import Engine

ENGINES = ("auto", "cpu", "cuda", "ort-tensorrt")
_AUTO_ORDER = ("ort-tensorrt", "cuda", "cpu")


def resolve_engine_name(name: str) -> str:
    """The concrete engine `name` stands for on this machine (`auto` picks the fastest present)."""
    from . import onnx

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    if name != "auto":
        return name
    return next(candidate for candidate in _AUTO_ORDER if onnx.available(candidate))


def open_engine(model: str | Path, engine: str = "cpu", threads: int | None = None) -> Engine:
    """Load `model` on the named engine; raise EngineUnavailableError if it cannot start."""
    from .onnx import OnnxEngine

    return OnnxEngine(model, resolve_engine_name(engine), threads=threads)


__all__ = ["ENGINES", "Engine", "open_engine", "resolve_engine_name"]
