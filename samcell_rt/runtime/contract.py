"""The model contract of DESIGN.md: metadata every samcell-rt model carries, checked on load."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError

INPUT_NAME = "tiles"
OUTPUT_NAME = "distance"
PREPROCESS = "reference-v1"
META_KEYS = {  # every metadata key a samcell-rt model file or engine header may carry: field -> key
    "name": "samcell.model_name",
    "version": "samcell.version",
    "tile": "samcell.tile",
    "peak_threshold": "samcell.peak_threshold",
    "fill_threshold": "samcell.fill_threshold",
    "source_sha256": "samcell.source_sha256",
    "preprocess": "samcell.preprocess",
    # optional: the cell sizes a model was trained on (runtime/scale.py); models without them are never
    # rescaled unless the user names both sizes
    "diameter": "samcell.diameter_px",
    "diameter_range": "samcell.diameter_range_px",
    # provenance written by export
    "precision": "samcell.precision",
    "checkpoint_layout": "samcell.checkpoint_layout",
    "exporter": "samcell.exporter",
    "verified_max_abs_error": "samcell.verified_max_abs_error",
    "fp16_source": "samcell.fp16_source",
    "fp16_max_abs_error_vs_fp32": "samcell.fp16_max_abs_error_vs_fp32",
    "weights_sha256": "samcell.weights_sha256",  # a shipped graph filled from a weights file: which one
    # provenance written by `adapt`
    "adapted_from": "samcell.adapted_from",
    "parent_sha256": "samcell.parent_sha256",
    "training_data_sha256": "samcell.training_data_sha256",
    "adapt_scores": "samcell.adapt_scores",
}
REQUIRED = ("name", "version", "tile", "peak_threshold", "fill_threshold", "source_sha256", "preprocess")
PROPS = {field: META_KEYS[field] for field in REQUIRED}  # what every model must carry (checked on load)
DIAMETER_PROPS = {field: META_KEYS[field] for field in ("diameter", "diameter_range")}


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model, read from its metadata props."""

    path: Path
    name: str
    version: str
    tile: int
    peak_threshold: float
    fill_threshold: float
    source_sha256: str
    preprocess: str
    diameter: float | None = None  # typical training cell diameter, pixels
    diameter_range: tuple[float, float] | None = None  # diameters the model was trained on, pixels

    @classmethod
    def from_props(cls, path: str | Path, props: dict[str, str]) -> ModelInfo:
        """Validate metadata props; raise ModelError listing what is missing or wrong."""
        missing = [key for key in PROPS.values() if key not in props]
        if missing:
            raise ModelError(path, f"not a samcell-rt model: metadata lacks {', '.join(missing)}")
        values = {field: props[key] for field, key in PROPS.items()}
        try:
            tile = int(values["tile"])
            peak, fill = float(values["peak_threshold"]), float(values["fill_threshold"])
        except ValueError as exc:
            raise ModelError(path, f"malformed metadata value ({exc})") from exc
        if values["preprocess"] != PREPROCESS:
            raise ModelError(path, f"preprocess {values['preprocess']!r} is not supported (expected {PREPROCESS!r})")
        if tile < 64:
            raise ModelError(path, f"tile size {tile} is too small (at least 64)")
        if not (0.0 <= fill <= 1.0 and 0.0 <= peak <= 1.0):
            raise ModelError(path, f"thresholds must lie in [0, 1] (peak {peak}, fill {fill})")
        return cls(Path(path), values["name"], values["version"], tile, peak, fill,
                   values["source_sha256"], values["preprocess"], *_diameters(path, props))


def _diameters(path: str | Path, props: dict[str, str]) -> tuple[float | None, tuple[float, float] | None]:
    """The optional trained-size props, checked: a typical diameter inside a positive range."""
    typical, span = props.get(DIAMETER_PROPS["diameter"]), props.get(DIAMETER_PROPS["diameter_range"])
    if typical is None or span is None:
        return None, None
    try:
        low, high = (float(v) for v in span.split(","))
        diameter = float(typical)
    except ValueError as exc:
        raise ModelError(path, f"malformed cell diameter metadata {typical!r} / {span!r} ({exc})") from exc
    if not 0 < low <= diameter <= high:
        raise ModelError(path, f"cell diameter metadata inconsistent: {diameter} not within {low}..{high} px")
    return diameter, (low, high)


def check_io(path: Path, tile: int, inputs: list[tuple[str, str, list[int | None]]],
             outputs: list[tuple[str, str]]) -> None:
    """Raise ModelError unless the graph has the contract's one uint8 input (batch, 1, tile, tile) with a
    dynamic batch and a float32 output. Each engine describes its graph's inputs as (name, numpy dtype
    name, shape with None for dynamic sizes) and outputs as (name, dtype name)."""
    problems = []
    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME or inputs[0][1] != "uint8":
        problems.append(f"needs one uint8 input named {INPUT_NAME!r}")
    elif list(inputs[0][2][1:]) != [1, tile, tile] or inputs[0][2][0] is not None:
        shape = ["batch" if d is None else d for d in inputs[0][2]]
        problems.append(f"input shape must be (batch, 1, {tile}, {tile}) with a dynamic batch, got {shape}")
    if not outputs or outputs[0][0] != OUTPUT_NAME or outputs[0][1] != "float32":
        problems.append(f"needs a float32 output named {OUTPUT_NAME!r}")
    if problems:
        raise ModelError(path, "breaks the samcell-rt ONNX contract: " + "; ".join(problems))


OUTPUT_SLACK = 1e-3  # fp16 engines may overshoot [0, 1] by rounding


def check_output(path: Path, tiles: np.ndarray, maps: np.ndarray) -> None:
    """Raise ModelError unless `maps` are the float32 distance maps in [0, 1] the contract promises.

    A model that returns NaN would otherwise yield "0 cells, ok" and one returning 2.0 a single
    cell covering the image; both are a broken model, not a property of the image.
    """
    if maps.shape != tiles.shape or maps.dtype != np.float32:
        raise ModelError(path, f"returned {maps.dtype} {maps.shape} for tiles {tiles.shape}; the contract is "
                               f"float32 of the same shape")
    if not np.isfinite(maps).all():
        raise ModelError(path, "returned NaN or infinite distance values")
    low, high = float(maps.min()), float(maps.max())
    if low < -OUTPUT_SLACK or high > 1 + OUTPUT_SLACK:
        raise ModelError(path, f"returned distance values in [{low:.3g}, {high:.3g}]; the contract is [0, 1]")


def read_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata props, weights not loaded (engines that do not expose ONNX metadata,
    export and the shipped-model cache read them here); ModelError for a file that is no ONNX model."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError (and others) for a file that is no ONNX model
        raise ModelError(path, f"not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return {p.key: p.value for p in model.metadata_props}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large models do not sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_HASHES: dict[tuple, str] = {}
_HASH_LOCK = threading.Lock()


def model_sha256(path: str | Path) -> str:
    """file_sha256 of a model file, computed once per process while the file stays the same (same path,
    size, mtime and inode): a start names the model in several places (the shipped-file check, the
    engine caches, the run's manifest), and a large model should be read once, not once for each."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _HASH_LOCK:
        if key not in _HASHES:
            _HASHES[key] = file_sha256(path)
        return _HASHES[key]
