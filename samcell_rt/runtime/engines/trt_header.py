"""TensorRT engine files (both flavours): a small JSON header in front of the serialized engine, and the cache.

Two flavours share one file format and one loader:
- `tensorrt`: the full TensorRT (datacenter GPUs). Its engine runs only on the GPU model and
  TensorRT version it was built on, so the header records that GPU.
- `tensorrt-rtx`: TensorRT for RTX. Built ahead of time without a GPU for a list of target compute
  capabilities and JIT-specialised on the device, so the header records the targets instead.
Either way an engine only means something for the ONNX graph it came from. The header records
these facts so a stale or foreign engine is refused, with the command that rebuilds it, before
the library is asked to deserialize it. File layout: MAGIC, 4-byte little-endian header length,
header JSON, engine bytes. Readable without TensorRT or a GPU.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import SamcellError
from .table import Flavour, Precision

MAGIC = b"SAMCELL-TRT\x02"
OLD_MAGICS = (b"SAMCELL-TRT\x01",)


@dataclass(frozen=True)
class Library:
    """One TensorRT flavour's library: how users, `build-engine --runtime` and pip name it."""

    label: str  # in messages
    option: str  # build-engine --runtime
    module: str  # Python module to import
    extra: str  # samcell-rt extra that installs it


FLAVOURS = {  # header flavour -> its names everywhere else (the one table)
    Flavour.TENSORRT: Library("TensorRT", "tensorrt", "tensorrt", "tensorrt"),
    Flavour.RTX: Library("TensorRT-RTX", "rtx", "tensorrt_rtx_bindings", "tensorrt-rtx"),
}
RUNTIMES = {flavour.option: name for name, flavour in FLAVOURS.items()}  # build-engine --runtime -> header flavour


class EngineMismatchError(SamcellError):
    """An engine file was built for another GPU, library version or ONNX model."""


def engines_dir() -> Path:
    """Built engines, timing and runtime caches, in the user cache."""
    from ...cache import cache_dir

    return cache_dir() / "engines"


@dataclass(frozen=True, kw_only=True)
class EngineHeader:
    """Facts an engine is only valid under, plus the model contract it carries."""

    flavour: str  # a Flavour value
    version: str  # of the library that built it
    gpu_name: str  # tensorrt: the GPU it was built on; tensorrt-rtx: "" (any GPU of a target capability)
    compute_capabilities: tuple[str, ...]  # tensorrt: (the GPU's,); tensorrt-rtx: the build targets
    precision: str  # a Precision value
    min_batch: int
    opt_batch: int
    max_batch: int
    tile: int
    onnx_sha256: str
    source: str = ""  # what the user built from (model name or ONNX path), for the rebuild command
    model_props: dict[str, str] = field(default_factory=dict)
    fp32_layers: list[str] = field(default_factory=list)
    max_abs_error: float | None = None
    verification: str = ""  # what was checked at build time, in words

    def __post_init__(self) -> None:
        object.__setattr__(self, "compute_capabilities", tuple(self.compute_capabilities))

    @property
    def library(self) -> str:
        return FLAVOURS[self.flavour].label if self.flavour in FLAVOURS else self.flavour

    def cache_key(self) -> str:
        """Short key over everything an engine's validity depends on."""
        fields = (self.flavour, self.gpu_name, ",".join(self.compute_capabilities), self.version, self.precision,
                  str(self.max_batch), self.onnx_sha256)
        return hashlib.sha256("|".join(fields).encode()).hexdigest()[:16]

    def targets(self) -> str:
        if self.flavour == Flavour.RTX:
            return "compute capability " + ", ".join(self.compute_capabilities)
        return f"{self.gpu_name} (sm {', '.join(self.compute_capabilities)})"

    def rebuild_command(self, flavour: str | None = None, compute_capability: str | None = None) -> str:
        flavour = flavour or self.flavour
        option = FLAVOURS[flavour].option if flavour in FLAVOURS else flavour
        command = (f"samcell-rt build-engine {self.source or 'MODEL.onnx'} --runtime {option} "
                   f"--precision {self.precision} --max-batch {self.max_batch} --opt-batch {self.opt_batch}")
        if flavour == Flavour.RTX and compute_capability:
            command += f" --compute-capability {compute_capability}"
        return command

    def check(self, gpu_name: str, compute_capability: str, version: str, onnx_sha256: str | None = None,
              rtx_capabilities: tuple[str, ...] = ()) -> None:
        """Raise EngineMismatchError naming the difference and the rebuild command.

        `rtx_capabilities`: what the installed TensorRT-RTX can target; when this GPU is not among
        them, no TensorRT-RTX rebuild helps and the message points to the full TensorRT instead.
        """
        problems = self._problems(gpu_name, compute_capability, version, onnx_sha256)
        if not problems:
            return
        if self.flavour == Flavour.RTX and rtx_capabilities and compute_capability not in rtx_capabilities:
            fix = (f"TensorRT-RTX cannot target sm {compute_capability} (it targets {', '.join(rtx_capabilities)}): "
                   f"use --engine cuda, or build with the full TensorRT: {self.rebuild_command(Flavour.TENSORRT)}")
        else:
            fix = f"Rebuild it with: {self.rebuild_command(compute_capability=compute_capability)}"
        raise EngineMismatchError(f"{self.library} engine cannot be used: " + "; ".join(problems) + f". {fix}")

    def _problems(self, gpu_name: str, compute_capability: str, version: str, onnx_sha256: str | None) -> list[str]:
        problems = []
        if self.flavour == Flavour.RTX:
            if compute_capability not in self.compute_capabilities:
                problems.append(f"built for {self.targets()}, this GPU is {gpu_name} (sm {compute_capability})")
        elif (gpu_name, (compute_capability,)) != (self.gpu_name, self.compute_capabilities):
            problems.append(f"built for {self.targets()}, this GPU is {gpu_name} (sm {compute_capability})")
        if version != self.version:
            problems.append(f"built with {self.library} {self.version}, this is {self.library} {version}")
        if onnx_sha256 is not None and onnx_sha256 != self.onnx_sha256:
            problems.append("built from another ONNX model (sha256 differs)")
        return problems


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
        magic = handle.read(len(MAGIC))
        if magic in OLD_MAGICS:
            raise EngineMismatchError(f"{path}: engine written by an older samcell-rt (header format 1); "
                                      "rebuild it with `samcell-rt build-engine`")
        if magic != MAGIC:
            raise EngineMismatchError(f"{path}: not a samcell-rt TensorRT engine (no header); "
                                      "build engines with `samcell-rt build-engine`")
        (length,) = struct.unpack("<I", handle.read(4))
        try:
            header = EngineHeader(**json.loads(handle.read(length)))
        except (TypeError, ValueError) as exc:
            raise EngineMismatchError(f"{path}: unreadable engine header ({exc}); rebuild it with "
                                      "`samcell-rt build-engine`") from exc
    return header, len(MAGIC) + 4 + length


def cached_engine_path(header: EngineHeader) -> Path:
    """Where the engine for these facts lives in the user cache."""
    from ..contract import META_KEYS  # numpy comes with it: not at import, the CLI reads this module

    name = header.model_props.get(META_KEYS["name"], "model")
    tag = "rtx" if header.flavour == Flavour.RTX else "trt"
    return engines_dir() / f"{name}-{tag}-{header.precision}-{header.cache_key()}.engine"


def find_cached_engine(onnx_sha256: str, gpu_name: str, compute_capability: str, versions: dict[str, str],
                       precision: str = Precision.FP16) -> Path | None:
    """A cached engine valid for this ONNX model on this GPU with an installed flavour, if one was built.

    `versions` maps each installed flavour to its version; the full TensorRT's engines (built for
    this very GPU) are preferred over TensorRT-RTX's.
    """
    found: dict[str, Path] = {}
    for path in sorted(engines_dir().glob("*.engine")):
        try:
            header, _ = read_header(path)
            if header.flavour not in versions or header.precision != precision:
                continue
            header.check(gpu_name, compute_capability, versions[header.flavour], onnx_sha256)
        except (EngineMismatchError, OSError):
            continue
        found.setdefault(header.flavour, path)
    return found.get(Flavour.TENSORRT) or found.get(Flavour.RTX)


def runtime_cache_path(header: EngineHeader, gpu_name: str) -> Path:
    """Where TensorRT-RTX's JIT (runtime) cache for this engine on this GPU is kept between starts."""
    key = hashlib.sha256(f"{header.cache_key()}|{gpu_name}".encode()).hexdigest()[:16]
    return engines_dir() / f"runtime-{key}.cache"
