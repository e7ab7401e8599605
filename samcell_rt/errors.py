"""Error types users and integrators can catch; every message names the file and the cause."""

from __future__ import annotations

from pathlib import Path


class SamcellError(Exception):
    """Base class for all samcell-rt errors."""


class ImageReadError(SamcellError):
    """An input image is missing, empty, truncated, corrupt or of an unsupported kind."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ModelError(SamcellError):
    """A model file cannot be used: missing, unreadable, or breaking the ONNX contract."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"model {self.path}: {cause}")


class EngineUnavailableError(SamcellError):
    """A requested inference engine cannot start on this machine."""
