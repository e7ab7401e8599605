"""TensorRT engine files: a small JSON header in front of the serialized engine, and the cache.

A serialized TensorRT engine only runs on the GPU model and TensorRT version it was built for,
and only means something for the ONNX graph it came from. The header records those facts so a
stale or foreign engine is refused with the command that rebuilds it, before TensorRT is asked to
deserialize it. File layout: MAGIC, 4-byte little-endian header length, header JSON, engine bytes.
Readable without TensorRT or a GPU.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import SamcellError

MAGIC = b"SAMCELL-TRT\x01"


class EngineMismatchError(SamcellError):
    """An engine file was built for another GPU, TensorRT version or ONNX model."""


@dataclass(frozen=True)
class EngineHeader:
    """Facts an engine is only valid under, plus the model contract it carries."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    tile: int
    onnx_sha256: str
    onnx_path: str = ""
    model_props: dict[str, str] = field(default_factory=dict)
    fp32_layers: list[str] = field(default_factory=list)
    max_abs_error: float | None = None

    def cache_key(self) -> str:
        """Short key over everything an engine's validity depends on."""
        fields = (self.gpu_name, self.compute_capability, self.tensorrt_version, self.precision,
                  str(self.max_batch), self.onnx_sha256)
        return hashlib.sha256("|".join(fields).encode()).hexdigest()[:16]

    def rebuild_command(self) -> str:
        source = self.onnx_path or "MODEL.onnx"
        return (f"samcell-rt build-engine {source} --precision {self.precision} "
                f"--max-batch {self.max_batch} --opt-batch {self.opt_batch}")

    def check(self, gpu_name: str, compute_capability: str, tensorrt_version: str,
              onnx_sha256: str | None = None) -> None:
        """Raise EngineMismatchError naming the difference and the rebuild command."""
        problems = []
        if (gpu_name, compute_capability) != (self.gpu_name, self.compute_capability):
            problems.append(f"built for {self.gpu_name} (sm {self.compute_capability}), "
                            f"this GPU is {gpu_name} (sm {compute_capability})")
        if tensorrt_version != self.tensorrt_version:
            problems.append(f"built with TensorRT {self.tensorrt_version}, this is TensorRT {tensorrt_version}")
        if onnx_sha256 is not None and onnx_sha256 != self.onnx_sha256:
            problems.append("built from another ONNX model (sha256 differs)")
        if problems:
            raise EngineMismatchError("engine cannot be used: " + "; ".join(problems) +
                                      f". Rebuild it with: {self.rebuild_command()}")


def write_engine(path: str | Path, header: EngineHeader, engine: bytes) -> None:
    """Write header + engine atomically."""
    from ..atomic import atomic_path

    blob = json.dumps(asdict(header), sort_keys=True).encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(MAGIC + struct.pack("<I", len(blob)) + blob)
            handle.write(engine)


def read_header(path: str | Path) -> tuple[EngineHeader, int]:
    """The header and the byte offset where the serialized engine starts."""
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise EngineMismatchError(f"{path}: not a samcell-rt TensorRT engine (no header); "
                                      "build engines with `samcell-rt build-engine`")
        (length,) = struct.unpack("<I", handle.read(4))
        header = EngineHeader(**json.loads(handle.read(length)))
    return header, len(MAGIC) + 4 + length


def cached_engine_path(header: EngineHeader) -> Path:
    """Where the engine for these facts lives in the user cache."""
    from ...cache import cache_dir

    name = header.model_props.get("samcell.model_name", "model")
    return cache_dir() / "engines" / f"{name}-{header.precision}-{header.cache_key()}.engine"


def find_cached_engine(onnx_sha256: str, gpu_name: str, compute_capability: str, tensorrt_version: str,
                       precision: str = "fp16") -> Path | None:
    """A cached engine valid for this ONNX model on this GPU and TensorRT, if one was built."""
    from ...cache import cache_dir

    for path in sorted((cache_dir() / "engines").glob("*.engine")):
        try:
            header, _ = read_header(path)
            header.check(gpu_name, compute_capability, tensorrt_version, onnx_sha256)
        except (EngineMismatchError, OSError, TypeError, ValueError):
            continue
        if header.precision == precision:
            return path
    return None
