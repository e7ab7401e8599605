"""Native TensorRT engines, both flavours (extras `tensorrt`, `tensorrt-rtx`): cuda-python buffers, one
stream and context per thread.

The engine file's header says which library built it (the full TensorRT or TensorRT-RTX); that
library is imported, the header is checked against this GPU and the library's version, and only
then is the engine deserialised. Each calling thread gets its own execution context, CUDA stream,
pinned host buffers and device buffers sized for the profile's max batch; copies are asynchronous
on that stream. Larger inputs run in chunks of the max batch. TensorRT-RTX compiles kernels for
the device on first use; its runtime cache is kept in the user cache (see rtx_cache.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from pathlib import Path

import numpy as np

from ...errors import EngineUnavailableError
from ..contract import INPUT_NAME, OUTPUT_NAME, ModelInfo
from .table import Flavour, engine_row
from .trt_header import FLAVOURS, read_header, runtime_cache_path


def import_library(flavour: str):
    """The Python module of a TensorRT flavour, or EngineUnavailableError saying how to install it."""
    library = FLAVOURS[flavour]
    try:
        return importlib.import_module(library.module)
    except ImportError as exc:
        raise EngineUnavailableError(f"{library.label} is not installed (pip install 'samcell-rt[{library.extra}]')") from exc


def installed_flavours() -> dict[str, str]:
    """Installed TensorRT flavours and their versions (no GPU needed)."""
    found = {}
    for flavour, library in FLAVOURS.items():
        try:
            if importlib.util.find_spec(library.module) is not None:
                found[flavour] = str(importlib.import_module(library.module).__version__)
        except Exception:  # a broken install (missing shared libraries) counts as absent
            continue
    return found


def rtx_capabilities(trt) -> tuple[str, ...]:
    """Compute capabilities TensorRT-RTX can target, "7.5" style (from its ComputeCapability enum)."""
    names = [n for n in trt.ComputeCapability.__members__ if n.startswith("SM")]
    return tuple(f"{n[2:-1]}.{n[-1]}" for n in names)


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise EngineUnavailableError("the TensorRT engine needs cuda-python (install the 'tensorrt' extra)") from exc
    return cudart


def _check(result):
    """cuda-python returns (error, *values); raise on error, return the values."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise EngineUnavailableError(f"CUDA call failed with error {int(error)} ({error})")
    return values[0] if len(values) == 1 else values


def device_facts() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0."""
    cudart = _cudart()
    try:
        props = _check(cudart.cudaGetDeviceProperties(0))
    except EngineUnavailableError as exc:
        raise EngineUnavailableError(f"no usable CUDA GPU here ({exc})") from None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def available() -> bool:
    """Whether a TensorRT flavour, cuda-python and a CUDA device are present."""
    if not installed_flavours():
        return False
    try:
        device_facts()
    except Exception:
        return False
    return True


def locate(engine: str, model: Path) -> Path | None:
    """The engine file to load for `model`: itself when it is one, else a cached engine valid on this
    GPU with an installed flavour (full TensorRT preferred over TensorRT-RTX), else None."""
    if model.suffix == ".engine":
        return model
    if not available():
        return None
    from ..contract import model_sha256
    from .trt_header import find_cached_engine

    gpu, capability = device_facts()
    return find_cached_engine(model_sha256(model), gpu, capability, installed_flavours())


def load(engine: str, path: Path, threads: int | None) -> TensorRTEngine:
    """The engine table's loader: an ONNX model here means no engine was built for it."""
    if path.suffix != ".engine":
        raise EngineUnavailableError(f"no TensorRT engine for {path} on this machine: build one with "
                                     f"`samcell-rt build-engine {path}` (needs {engine_row(engine).needs})")
    return TensorRTEngine(path)


class _ThreadState:
    """Per-thread context, stream and buffers (contexts are not thread-safe)."""

    def __init__(self, engine, max_batch: int, tile: int, runtime_cache=None) -> None:
        cudart = _cudart()
        self.context = runtime_cache.context(engine) if runtime_cache else engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        count = max_batch * tile * tile
        self.host_in = _check(cudart.cudaMallocHost(count))  # uint8
        self.host_out = _check(cudart.cudaMallocHost(count * 4))  # float32
        self.dev_in = _check(cudart.cudaMalloc(count))
        self.dev_out = _check(cudart.cudaMalloc(count * 4))
        self.context.set_tensor_address(INPUT_NAME, int(self.dev_in))
        self.context.set_tensor_address(OUTPUT_NAME, int(self.dev_out))
        self.in_view = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * count).from_address(int(self.host_in)))
        self.out_view = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * count).from_address(int(self.host_out)))


class TensorRTEngine:
    """A deserialised TensorRT or TensorRT-RTX engine behind the engine protocol."""

    name = "tensorrt"  # the engine table's row, whichever flavour built the file

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        row = engine_row(self.name)
        header, offset = read_header(path)
        trt = import_library(header.flavour)
        try:
            gpu, capability = device_facts()
        except EngineUnavailableError as exc:
            raise EngineUnavailableError(f"{exc}: run on the CPU with --engine cpu, or with --engine auto, which "
                                         "takes what this machine has") from None
        rtx = header.flavour == Flavour.RTX
        header.check(gpu, capability, trt.__version__, rtx_capabilities=rtx_capabilities(trt) if rtx else ())
        self.header = header
        self.precision = header.precision
        self.info = ModelInfo.from_props(path, header.model_props)
        self.max_batch = header.max_batch  # the engine was built for batches up to this
        self.default_batch, self.pipelined = row.default_batch or header.max_batch, row.pipelined
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes()[offset:])
        if self.engine is None:
            raise EngineUnavailableError(f"{path}: {header.library} could not deserialise the engine; rebuild with "
                                         f"{header.rebuild_command()}")
        self.runtime_cache = None
        if rtx:
            from .rtx_cache import RuntimeCache

            _check(_cudart().cudaFree(0))  # the cache checks its blob against the current CUDA context
            self.runtime_cache = RuntimeCache(self.engine, runtime_cache_path(header, gpu))
        self._local = threading.local()

    def _state(self) -> _ThreadState:
        if not hasattr(self._local, "state"):
            self._local.state = _ThreadState(self.engine, self.max_batch, self.info.tile, self.runtime_cache)
        return self._local.state

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Distance maps for uint8 tiles (B, 1, T, T), in chunks of the profile's max batch."""
        return np.concatenate([self._run_chunk(tiles[i : i + self.max_batch])
                               for i in range(0, len(tiles), self.max_batch)])

    def _run_chunk(self, tiles: np.ndarray) -> np.ndarray:
        cudart = _cudart()
        state = self._state()
        count = tiles.size
        state.in_view[:count] = np.ascontiguousarray(tiles, dtype=np.uint8).ravel()
        state.context.set_input_shape(INPUT_NAME, tiles.shape)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(state.dev_in, state.host_in, count, h2d, state.stream))
        if not state.context.execute_async_v3(int(state.stream)):
            raise EngineUnavailableError("TensorRT execution failed")
        _check(cudart.cudaMemcpyAsync(state.host_out, state.dev_out, count * 4, d2h, state.stream))
        _check(cudart.cudaStreamSynchronize(state.stream))
        if self.runtime_cache is not None:
            self.runtime_cache.after_run(len(tiles))
        return state.out_view[:count].reshape(tiles.shape).astype(np.float32, copy=True)
