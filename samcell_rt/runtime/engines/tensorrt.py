"""Native TensorRT engine (extra `tensorrt`): cuda-python buffers, one stream and context per thread.

Each calling thread gets its own execution context, CUDA stream, pinned host buffers and device
buffers sized for the profile's max batch; copies are asynchronous on that stream. Larger inputs
run in chunks of the max batch. Engines carry a header (see trt_header.py) that is checked against
this GPU and TensorRT version before deserialising.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import EngineUnavailableError
from ..contract import INPUT_NAME, OUTPUT_NAME, ModelInfo
from . import spec
from .trt_header import read_header


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
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def available() -> bool:
    """Whether TensorRT, cuda-python and a CUDA device are present."""
    try:
        import tensorrt  # noqa: F401

        device_facts()
    except Exception:
        return False
    return True


def locate(engine: str, model: Path) -> Path | None:
    """The engine file to load for `model`: itself when it is one, else a cached engine valid here."""
    if model.suffix == ".engine":
        return model
    if not available():
        return None
    import tensorrt

    from ..contract import file_sha256
    from .trt_header import find_cached_engine

    gpu, capability = device_facts()
    return find_cached_engine(file_sha256(model), gpu, capability, tensorrt.__version__)


def load(engine: str, path: Path, threads: int | None) -> TensorRTEngine:
    """The engine table's loader: an ONNX model here means no engine was built for it."""
    if path.suffix != ".engine":
        raise EngineUnavailableError(f"no TensorRT engine for {path} on this machine: build one with "
                                     f"`samcell-rt build-engine {path}` (needs {spec(engine).needs})")
    return TensorRTEngine(path)


class _ThreadState:
    """Per-thread context, stream and buffers (contexts are not thread-safe)."""

    def __init__(self, engine, max_batch: int, tile: int) -> None:
        cudart = _cudart()
        self.context = engine.create_execution_context()
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
    """A deserialised TensorRT engine behind the engine protocol."""

    name = "tensorrt"
    pipelined = True

    def __init__(self, path: str | Path) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise EngineUnavailableError("engine 'tensorrt' needs TensorRT (install the 'tensorrt' extra on a "
                                         "CUDA machine, or use --engine cuda / cpu)") from exc
        path = Path(path)
        header, offset = read_header(path)
        gpu, capability = device_facts()
        header.check(gpu, capability, trt.__version__)
        self.header = header
        self.info = ModelInfo.from_props(path, header.model_props)
        self.max_batch = self.default_batch = header.max_batch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes()[offset:])
        if self.engine is None:
            raise EngineUnavailableError(f"{path}: TensorRT could not deserialise the engine; rebuild with "
                                         f"{header.rebuild_command()}")
        self._local = threading.local()

    def _state(self) -> _ThreadState:
        if not hasattr(self._local, "state"):
            self._local.state = _ThreadState(self.engine, self.max_batch, self.info.tile)
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
        return state.out_view[:count].reshape(tiles.shape).astype(np.float32, copy=True)
