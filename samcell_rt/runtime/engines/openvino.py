"""OpenVINO engine (extra `openvino`): ONNX models on OpenVINO's CPU plugin, in bf16 where the processor
multiplies bf16 natively (AMX or AVX512-BF16) and the model's bf16 labels agree with its fp32 labels
(the accuracy guard, bf16_guard.py), in fp32 otherwise. Where bf16 is not native, OpenVINO compiles
fp32 whatever it is asked (seen on a Zen 3 with 2026.4), so the precision an engine reports is the one
its compiled model says it computes in, not the one it was asked for.

Compiled models are kept in the user cache (OpenVINO's CACHE_DIR, keyed by OpenVINO on the file,
precision and threads), so a second start skips compilation. One compiled model serves all threads;
infer requests are not thread-safe, so each call takes an idle one from a pool (a new one when all
are busy) and gives it back. Requests are not kept per thread: freeing one when its thread ended
crashed the process later (seen with napari's worker threads).
"""

from __future__ import annotations

import importlib.util
import queue
from pathlib import Path

import numpy as np

from ...cache import cache_dir
from ...errors import EngineUnavailableError, ModelError
from ..contract import INPUT_NAME, META_KEYS, ModelInfo, check_io, model_sha256, read_props
from ..cpu import native_bf16
from . import bf16_guard
from .onnx import default_threads
from .table import Precision, engine_row

HINTS = {Precision.BF16: "bf16", Precision.FP32: "f32"}  # our precisions -> OpenVINO's INFERENCE_PRECISION_HINT names


def available() -> bool:
    """Whether OpenVINO is installed (found without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def compiled_dir() -> Path:
    """OpenVINO's CACHE_DIR: compiled models, reused by later starts."""
    return cache_dir() / "openvino" / "compiled"


def _writable(folder: Path) -> bool:
    """Whether `folder` exists or can be made (a read-only user cache means compiling at every start)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return True


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise EngineUnavailableError(f"engine 'openvino' needs {engine_row('openvino').needs}") from exc
    return openvino


def compile_model(path: Path, precision: str, threads: int | None = None, cache: bool = True):
    """`path` compiled for this CPU in `precision` (bf16 or fp32: a key of HINTS), contract inputs checked."""
    ov = _openvino()
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": threads or default_threads()}
    if cache and _writable(compiled_dir()):
        config["CACHE_DIR"] = str(compiled_dir())
    try:
        return ov.Core().compile_model(str(path), "CPU", config)
    except RuntimeError as exc:
        raise ModelError(path, f"OpenVINO cannot compile it ({str(exc).strip().splitlines()[0]})") from exc


def _check_io(path: Path, compiled, tile: int) -> None:
    def shape(port) -> list[int | None]:
        return [None if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]

    def names(port) -> str:
        return next(iter(sorted(port.get_names())), "")

    inputs = [(names(i), i.get_element_type().to_dtype().name, shape(i)) for i in compiled.inputs]
    outputs = [(names(o), o.get_element_type().to_dtype().name) for o in compiled.outputs]
    check_io(path, tile, inputs, outputs)


def bf16_agreement(path: Path, tile: int) -> bf16_guard.Agreement:
    """The guard images (read and drawn once) segmented through the runtime in fp32 and in bf16, here, compared."""
    images = bf16_guard.guard_images(tile)
    runs = {}
    for precision in HINTS:
        engine = OpenVinoEngine(path, precision=precision, cache=precision == Precision.BF16)  # fp32 is needed only now
        runs[precision] = [bf16_guard.segmented(engine.run, engine.info, image) for image in images]
    return bf16_guard.agreement(runs[Precision.FP32], runs[Precision.BF16])


def bf16_verdict(path: Path, info: ModelInfo | None = None) -> bf16_guard.Verdict:
    """Whether bf16 keeps this model's cells on this CPU (measured once, then cached)."""
    info = info or ModelInfo.from_props(path, read_props(path))
    key = bf16_guard.guard_key(model_sha256(path), _openvino().__version__)
    return bf16_guard.verdict(key, f"{info.name} {info.version}", lambda: bf16_agreement(path, info.tile))


def choose_precision(path: Path, info: ModelInfo | None = None) -> Precision:
    """bf16 where the CPU has it natively and the model passes the guard, else fp32."""
    return Precision.BF16 if native_bf16() and bf16_verdict(path, info).passed else Precision.FP32


def locate(engine: str, model: Path) -> Path | None:
    """For `auto`: the model where OpenVINO is installed and runs it in guarded bf16 here, else None.

    Without native bf16, `auto` never takes OpenVINO: its fp32 gain over the cpu engine is not a steady
    one (2-core Zen 3, AVX2 only, interleaved runs on a loaded machine: 0.93x on the demo frame, 1.12-1.36x
    on the 704x520 bench image), so the cpu engine serves there; `--engine openvino` still runs it."""
    if not (available() and native_bf16()):
        return None
    return model if choose_precision(model) == Precision.BF16 else None


def load(engine: str, path: Path, threads: int | None) -> OpenVinoEngine:
    """The engine table's loader."""
    return OpenVinoEngine(path, threads)


class OpenVinoEngine:
    """One compiled model for one ONNX file; `run` is thread-safe (a pool of infer requests)."""

    name = "openvino"
    max_batch: int | None = None

    def __init__(self, path: str | Path, threads: int | None = None, precision: str | None = None,
                 cache: bool = True) -> None:
        path = Path(path)
        row = engine_row(self.name)
        self.default_batch, self.pipelined = row.default_batch, row.pipelined
        _openvino()
        props = read_props(path)
        self.info = ModelInfo.from_props(path, props)
        if precision is not None and precision not in HINTS:
            raise EngineUnavailableError(f"engine 'openvino' runs {' or '.join(HINTS)}, not {precision!r}")
        compute = precision or choose_precision(path, self.info)
        self.compiled = compile_model(path, compute, threads, cache)
        _check_io(path, self.compiled, self.info.tile)
        # what it computes in: bf16 where the compiled model says so, else the graph's own format (fp32, or
        # int8 / fp16 as exported)
        bf16 = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == HINTS[Precision.BF16]
        self.precision = Precision.BF16 if bf16 else props.get(META_KEYS["precision"], Precision.FP32)
        self.from_cache = bool(self.compiled.get_property("LOADED_FROM_CACHE"))
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Distance maps (B, 1, T, T) float32 for uint8 tiles (B, 1, T, T)."""
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({INPUT_NAME: np.ascontiguousarray(tiles, dtype=np.uint8)})
            return request.get_output_tensor(0).data.copy()
        finally:
            self._idle.put(request)
