"""The engine protocol: the one model-specific step of the pipeline."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..contract import ModelInfo


class Engine(Protocol):
    """Runs a model on uint8 tiles (B, 1, T, T) and returns float32 distance maps (B, 1, T, T).

    Implementations must be safe to call from several threads at once.
    """

    name: str
    info: ModelInfo
    max_batch: int | None
    default_batch: int  # tiles per call when the caller does not say (from the engine's table row)
    pipelined: bool  # prepare and post-process on helper threads while it runs (GPU engines; from the row)
    precision: str  # what it computes in: a table.Precision value

    def run(self, tiles: np.ndarray) -> np.ndarray: ...
