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
    default_batch: int
    pipelined: bool  # prepare and post-process on helper threads while it runs (GPU engines)
    precision: str  # what it computes in: fp32, bf16, fp16, int8

    def run(self, tiles: np.ndarray) -> np.ndarray: ...
