"""The frozen image encoder as an onnxruntime graph, and a runtime engine that decodes with torch.

`adapt` trains only the mask decoder, so every tile's image embedding is computed once. On the
2-core development CPU onnxruntime ran the SAMCell-Lite encoder 4-5x faster than torch eager
(2.6 vs 13 s per tile under a load average of 11; see benchmarks/adapt.py), so the encoder is
exported once per starting model (keyed by its weights' sha256, kept in the user cache) and its
embeddings feed a torch decoder. `DecoderEngine` follows the runtime's engine protocol, so the
runtime's own tiling, blending and post-processing score a decoder on whole images; embeddings
are cached by tile content, so scoring the starting and the adapted decoder encodes each tile once.
The cached encoder file is trusted only when it matches the size and sha256 recorded beside it
when it was made (a truncated or altered file is made again), and made under a lock so two runs
never pair one's record with the other's file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..export.onnx import trace_graph
from ..runtime.atomic import atomic_path, file_lock, write_text_atomic
from ..runtime.contract import INPUT_NAME, PREPROCESS, ModelInfo, file_sha256

ENCODER_BATCH = 4
ENCODER_OPSET = 17


class _EncoderGraph(torch.nn.Module):
    """uint8 tiles -> image embeddings: the export wrapper's preprocessing plus the encoder."""

    def __init__(self, wrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.wrapper.embeddings(tiles)


class FrozenEncoder:
    """Image embeddings of enhanced uint8 tiles, from an ONNX export of the starting model's encoder."""

    def __init__(self, wrapper, weights_sha256: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = cache_dir() / "adapt" / f"encoder-{weights_sha256[:16]}-{wrapper.tile}.onnx"
        with file_lock(path.with_name(f".{path.name}.lock")):
            if not _intact(path):
                _export(wrapper, path)
        options = ort.SessionOptions()
        # idle onnxruntime threads spin by default, stealing the cores torch trains on between calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._cache: dict[bytes, np.ndarray] = {}

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """(N, 1, T, T) uint8 -> (N, C, h, w) float32, computed in small batches (bounded memory)."""
        return np.concatenate([self.session.run(None, {INPUT_NAME: np.ascontiguousarray(tiles[i : i + ENCODER_BATCH])})[0]
                               for i in range(0, len(tiles), ENCODER_BATCH)])

    def cached(self, tiles: np.ndarray) -> np.ndarray:
        """Like calling it, but each distinct tile is encoded once per FrozenEncoder."""
        keys = [hashlib.blake2b(tile.tobytes(), digest_size=16).digest() for tile in tiles]
        todo = sorted({i for i, key in enumerate(keys) if key not in self._cache})
        if todo:
            for i, embedding in zip(todo, self(tiles[todo])):
                self._cache[keys[i]] = embedding
        return np.stack([self._cache[key] for key in keys])


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _intact(path: Path) -> bool:
    """True when `path` has the size and sha256 its record says (no record, a damaged record: False)."""
    try:
        record = json.loads(_record(path).read_text(encoding="utf-8"))
        return (path.stat().st_size == record["size"]) and file_sha256(path) == record["sha256"]
    except (OSError, ValueError, TypeError, KeyError):
        return False


def _export(wrapper, path: Path) -> None:
    """Export the encoder graph to `path`, then record its size and sha256 (the record last: a run
    killed in between leaves a file without a record, made again next time)."""
    _record(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        trace_graph(_EncoderGraph(wrapper).eval(), tmp, wrapper.tile, ENCODER_OPSET, output_name="embeddings")
    write_text_atomic(_record(path), json.dumps({"size": path.stat().st_size, "sha256": file_sha256(path)}))


class DecoderEngine:
    """Runtime engine: frozen ONNX encoder (cached embeddings) + the wrapper's torch decoder."""

    name = "adapt-decoder"
    max_batch = None
    default_batch = 8
    pipelined = False

    def __init__(self, encoder: FrozenEncoder, wrapper, name: str, peak: float, fill: float) -> None:
        self.encoder, self.wrapper = encoder, wrapper
        self.info = ModelInfo(Path(name), name, "adapt", wrapper.tile, peak, fill, "", PREPROCESS)

    def run(self, tiles: np.ndarray) -> np.ndarray:
        embeddings = torch.from_numpy(self.encoder.cached(tiles))
        with torch.no_grad():
            return torch.sigmoid(self.wrapper.logits_from_embeddings(embeddings)).numpy().astype(np.float32)
