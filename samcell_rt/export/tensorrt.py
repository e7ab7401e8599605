"""ONNX -> TensorRT engine with one batch profile, a timing cache, an accuracy guard and a header.

Written against the TensorRT 10 Python API (extra `tensorrt`). The guard runs the new engine on
the export's verification tiles and compares with the fp32 ONNX model in onnxruntime; an fp16
engine over 1e-2 is rebuilt with LayerNorm, Softmax and sigmoid layers pinned to fp32, and an
engine still over tolerance is never written. Both errors are reported.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import SamcellError
from ..runtime.contract import INPUT_NAME, OUTPUT_NAME, file_sha256
from ..runtime.engines.trt_header import EngineHeader, cached_engine_path, write_engine
from .onnx import TOLERANCE, verification_tiles


class BuildError(SamcellError):
    """TensorRT could not build an engine that passes the accuracy guard."""


@dataclass
class BuildReport:
    path: Path
    header: EngineHeader
    errors: dict[str, float]  # "default" and, when rebuilt, "fp32-pinned"


def _reference_maps(onnx_path: Path, tiles: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: tiles[i : i + 1]})[0] for i in range(len(tiles))])


def _pin_fp32(network, trt) -> list[str]:
    """Force normalisation, softmax and sigmoid layers to fp32; return their names."""
    pinned = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        keep = layer.type in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX)
        if layer.type == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer  # the documented way to reach activation_type
            keep = layer.activation_type == trt.ActivationType.SIGMOID
        if keep:
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
            pinned.append(layer.name)
    return pinned


def _build(onnx_path: Path, precision: str, min_batch: int, opt_batch: int, max_batch: int, tile: int,
           workspace_gb: float, timing_cache: Path, calibrator, pin: bool) -> tuple[bytes, list[str]]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    pinned = _pin_fp32(network, trt) if pin else []
    if pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (min_batch, 1, tile, tile), (opt_batch, 1, tile, tile), (max_batch, 1, tile, tile))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path}")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), pinned


def build_engine(onnx_path: str | Path, out: str | Path | None = None, precision: str = "fp16", max_batch: int = 32,
                 opt_batch: int = 8, workspace_gb: float = 8.0, calib_dir: str | Path | None = None) -> BuildReport:
    """Build, guard and write an engine (default: into the user engine cache)."""
    import onnx
    import tensorrt as trt

    from ..cache import cache_dir
    from ..runtime.engines.tensorrt import TensorRTEngine, device_facts

    onnx_path = Path(onnx_path)
    if precision not in TOLERANCE:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(TOLERANCE)}")
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    tile = int(props.get("samcell.tile", 256))
    gpu, capability = device_facts()
    header = EngineHeader(trt.__version__, gpu, capability, precision, 1, min(opt_batch, max_batch), max_batch, tile,
                          file_sha256(onnx_path), str(onnx_path), props)
    tiles = verification_tiles(tile)
    expected = _reference_maps(onnx_path, tiles)
    calibrator = _calibrator(calib_dir, tile, max_batch) if precision == "int8" else None
    timing_cache = cache_dir() / "engines" / f"timing-{header.cache_key()}.cache"
    errors: dict[str, float] = {}
    for attempt, pin in (("default", False), ("fp32-pinned", True)):
        engine, pinned = _build(onnx_path, precision, 1, header.opt_batch, max_batch, tile, workspace_gb,
                                timing_cache, calibrator, pin)
        with tempfile.TemporaryDirectory() as tmp:
            candidate = replace(header, fp32_layers=pinned)
            write_engine(Path(tmp) / "candidate.engine", candidate, engine)
            got = TensorRTEngine(Path(tmp) / "candidate.engine").run(tiles)
        errors[attempt] = float(np.abs(got - expected).max())
        if errors[attempt] <= TOLERANCE[precision]:
            final = replace(candidate, max_abs_error=errors[attempt])
            path = Path(out) if out else cached_engine_path(final)
            write_engine(path, final, engine)
            return BuildReport(path, final, errors)
        if precision == "fp32":
            break
    raise BuildError(f"{precision} engine for {onnx_path} fails the accuracy guard: max abs error "
                     + ", ".join(f"{k} {v:.3g}" for k, v in errors.items()) + f" (tolerance {TOLERANCE[precision]}); "
                     "not written")


def _calibrator(calib_dir: str | Path | None, tile: int, batch: int):
    """An entropy calibrator over tiles cut from the images in `calib_dir` (runtime preprocessing)."""
    import tensorrt as trt

    from ..runtime.engines.tensorrt import _check, _cudart
    from ..runtime.io import is_image_file, read_image
    from ..runtime.preprocess import enhance_tiles, to_uint8
    from ..runtime.tiling import extract_tiles, tile_grid

    if calib_dir is None:
        raise ValueError("int8 needs --calib DIR with representative images")
    tiles = []
    for path in sorted(p for p in Path(calib_dir).iterdir() if is_image_file(p)):
        for frame in read_image(path).frames:
            image = to_uint8(frame)
            tiles.append(enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=tile))))
    if not tiles:
        raise ValueError(f"no images in {calib_dir} for int8 calibration")
    data = np.concatenate(tiles)[:, None]
    cudart = _cudart()

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.device = _check(cudart.cudaMalloc(batch * tile * tile))

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            if self.index >= len(data):
                return None
            chunk = np.ascontiguousarray(data[self.index : self.index + batch])
            self.index += batch
            _check(cudart.cudaMemcpy(self.device, chunk.ctypes.data, chunk.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self.device)]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            return None

    return Calibrator()
