"""The frozen part of a model as an onnxruntime graph, and a runtime engine that decodes with torch.

Adaptation trains only what lies after its frozen boundary (the whole encoder for `adapt`'s decoder
recipe, the first stages for `late`), so every crop's frozen features are computed once. On the
2-core development CPU onnxruntime ran the SAMCell-Lite encoder 4-5x faster than torch eager
(2.6 vs 13 s per tile under a load average of 11; see benchmarks/adapt.py), so the frozen part is
exported once per starting model and cut (keyed by its weights' sha256, kept in the user cache).
`DecoderEngine` follows the runtime's engine protocol, so the runtime's own tiling, blending and
post-processing score a decoder on whole images; embeddings are cached by tile content, so scoring
the starting and the adapted decoder encodes each tile once. A cached graph is trusted only when it
matches the size and sha256 recorded beside it when it was made (a truncated or altered file is made
again), and made under a lock so two runs never pair one's record with the other's file.
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


class FrozenPart(torch.nn.Module):
    """uint8 tiles -> the frozen part's output: the whole encoder with its neck (`stages` None: image
    embeddings), or preprocessing, patch embedding and the first `stages` encoder stages."""

    def __init__(self, wrapper, stages: int | None = None) -> None:
        super().__init__()
        self.wrapper, self.stages = wrapper, stages

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        if self.stages is None:
            return self.wrapper.embeddings(tiles)
        encoder = self.wrapper.sam.vision_encoder
        x = encoder.patch_embed(self.wrapper.pixel_values(tiles))
        for stage in encoder.layers[: self.stages]:
            x = stage(x)
        return x


class FrozenEncoder:
    """The frozen part's output for enhanced uint8 tiles, from its ONNX export (`stages` as `FrozenPart`)."""

    def __init__(self, wrapper, weights_sha256: str, threads: int | None = None, stages: int | None = None) -> None:
        import onnxruntime as ort

        cut = "" if stages is None else f"-stages{stages}"
        path = cache_dir() / "adapt" / f"encoder-{weights_sha256[:16]}{cut}-{wrapper.tile}.onnx"
        with file_lock(path.with_name(f".{path.name}.lock")):
            if not _intact(path):
                _export(FrozenPart(wrapper, stages).eval(), wrapper.tile, path)
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


def _export(part: FrozenPart, tile: int, path: Path) -> None:
    """Export the frozen part's graph to `path`, then record its size and sha256 (the record last: a
    run killed in between leaves a file without a record, made again next time)."""
    _record(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        trace_graph(part, tmp, tile, ENCODER_OPSET, output_name="features")
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
