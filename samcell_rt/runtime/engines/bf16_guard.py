"""The accuracy guard of bf16 on the CPU: a model runs in bf16 only where, on this processor, its
distance maps stay within TOLERANCE of fp32's on the guard tiles.

bf16 keeps 8 significant bits, so how far a model's maps move depends on the model (large logits,
long residual chains) and on the processor's kernels (AMX and AVX512-BF16 round differently). The
check runs once per (model sha256, CPU, OpenVINO version) and its verdict is kept in the user cache,
so later starts cost nothing. A failed check is said once per process; the engine then runs fp32.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...cache import cache_dir
from ...errors import SamcellWarning
from ..atomic import write_text_atomic
from ..cpu import cpu_model, reported_flags

TOLERANCE = 2e-2  # max abs distance-map difference from fp32; the thresholds sit 0.05..0.5 apart
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    """The guard's decision for one model on one CPU."""

    passed: bool
    max_abs_error: float
    tolerance: float = TOLERANCE

    def describe(self) -> str:
        sign = "<=" if self.passed else ">"
        return f"max abs difference from fp32 {self.max_abs_error:.3g} {sign} {self.tolerance:g} on the guard tiles"


_SEEN: dict[str, Verdict] = {}  # verdicts this process has read or made (and said, when failed)


def verdicts_path() -> Path:
    """The user-cache file of verdicts, one per model sha256, CPU and OpenVINO version."""
    return cache_dir() / "openvino" / "bf16-guard.json"


def guard_key(model_sha256: str, library_version: str) -> str:
    """What a verdict depends on: the weights, the processor (model name and precision flags), the library."""
    return f"{model_sha256}|{cpu_model()}|{','.join(reported_flags())}|openvino {library_version}"


def guard_tiles(tile: int, seed: int = 0) -> np.ndarray:
    """(4, 1, T, T) uint8: two noise tiles and two tiles of bright round cells on a dark, uneven
    background, after the contrast step the runtime applies (like the export's verification tiles,
    drawn here because the runtime may not import the synthetic-image helpers)."""
    import cv2

    from ..preprocess import enhance_tiles

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (2, tile, tile), dtype=np.uint8)
    cells = []
    for _ in range(2):
        canvas = rng.normal(40, 8, (tile, tile)).astype(np.float32)
        for _ in range(8):
            centre = tuple(int(c) for c in rng.integers(tile // 10, tile - tile // 10, 2))
            cv2.circle(canvas, centre, int(rng.integers(tile // 32, tile // 12)), float(rng.uniform(150, 230)), -1)
        cells.append(np.clip(cv2.GaussianBlur(canvas, (0, 0), 1.5), 0, 255).astype(np.uint8))
    return np.concatenate([noise, enhance_tiles(np.stack(cells))])[:, None]


def _load() -> dict[str, dict]:
    try:
        records = json.loads(verdicts_path().read_text())
    except (OSError, ValueError):  # none yet, or a damaged file: measure again
        return {}
    return records if isinstance(records, dict) else {}


def _store(key: str, found: Verdict) -> None:
    """Add a verdict to the user cache; where the cache cannot be written, it holds for this process only."""
    records = _load()
    records[key] = asdict(found)
    try:
        verdicts_path().parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(verdicts_path(), json.dumps(records, indent=1))
    except OSError:
        pass


def verdict(key: str, measure: Callable[[], float]) -> Verdict:
    """The cached verdict for `key`, or `measure()` (the max abs error) judged and stored."""
    with _LOCK:
        if key in _SEEN:
            return _SEEN[key]
        stored = _load().get(key)
        try:
            found = Verdict(**stored)
        except TypeError:  # none, or written by another version
            found = None
        if found is None or found.tolerance != TOLERANCE or not isinstance(found.passed, bool):
            error = float(measure())
            found = Verdict(bool(error <= TOLERANCE), error)
            _store(key, found)
        _SEEN[key] = found
    if not found.passed:
        warnings.warn(f"bf16 fails the accuracy guard for this model on this CPU ({found.describe()}): "
                      f"running fp32", SamcellWarning, stacklevel=3)
    return found
