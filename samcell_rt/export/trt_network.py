"""The TensorRT library calls of an engine build, for both flavours; export/tensorrt.py decides what to build.

- Full TensorRT (datacenter GPUs, needs one to build): weakly typed network from the fp32 graph,
  precision by builder flags (FP16, INT8 with a calibrator), optional fp32 pinning of LayerNorm /
  Softmax / sigmoid layers, a timing cache.
- TensorRT-RTX (builds without a GPU): strongly typed network, so precision is the graph's own
  (an fp16 graph gives an fp16 engine), and a list of target compute capabilities.
Both get one optimisation profile over the batch axis.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, SamcellError
from ..runtime.contract import INPUT_NAME
from ..runtime.engines.table import Precision


class BuildError(SamcellError):
    """TensorRT could not build an engine that passes the accuracy guard."""


@dataclass(frozen=True)
class Profile:
    """The one optimisation profile: batch min/opt/max of square uint8 tiles."""

    min_batch: int
    opt_batch: int
    max_batch: int
    tile: int

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple((b, 1, self.tile, self.tile) for b in (self.min_batch, self.opt_batch, self.max_batch))


def _logger(trt):
    """A logger that prints warnings and keeps the errors, so BuildError can quote them."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(msg)
            elif severity == trt.ILogger.WARNING:
                print(f"{trt.__name__}: {msg}", file=sys.stderr)

    return Logger()


def _parse(trt, onnx_path: Path, flags: int):
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"{onnx_path}: the ONNX parser rejected the graph: {errors}")
    return builder, network, (parser, logger)  # the parser and logger must outlive the build


def _finish(builder, network, keep, config, profile: Profile, onnx_path: Path) -> bytes:
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT_NAME, *profile.shapes())
    config.add_optimization_profile(shapes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reasons = "; ".join(keep[1].errors[-3:]) or "no reason given"
        raise BuildError(f"{onnx_path}: the builder failed to make an engine: {reasons}")
    return bytes(serialized)


def build_rtx(trt, onnx_path: Path, profile: Profile, targets: tuple[str, ...]) -> bytes:
    """A TensorRT-RTX engine for the given compute capabilities ("8.9" style); no GPU needed."""
    builder, network, keep = _parse(trt, onnx_path, 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    config.num_compute_capabilities = len(targets)
    for index, capability in enumerate(targets):
        config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + capability.replace(".", "")), index)
    return _finish(builder, network, keep, config, profile, onnx_path)


def pin_fp32(network, trt) -> list[str]:
    """Force normalisation, softmax and sigmoid layers to fp32 (full TensorRT); return their names."""
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


def build_full(onnx_path: Path, precision: str, profile: Profile, workspace_gb: float, timing_cache: Path,
               int8_calibrator, pin: bool) -> tuple[bytes, list[str]]:
    """A full-TensorRT engine for this GPU from the fp32 graph, and the layers pinned to fp32."""
    import tensorrt as trt

    builder, network, keep = _parse(trt, onnx_path, 0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision in (Precision.FP16, Precision.INT8):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == Precision.INT8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = int8_calibrator
    pinned = pin_fp32(network, trt) if pin else []
    if pinned:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = _finish(builder, network, keep, config, profile, onnx_path)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return engine, pinned


def calibrator(calib_dir: str | Path | None, tile: int, batch: int):
    """An entropy calibrator over tiles cut from the images in `calib_dir` (runtime preprocessing)."""
    import tensorrt as trt

    from ..runtime.engines.tensorrt import _check, _cudart
    from ..runtime.io import is_image_file, read_image
    from ..runtime.preprocess import enhance_tiles, to_uint8
    from ..runtime.tiling import extract_tiles, tile_grid

    if calib_dir is None:
        raise InputError("int8 needs --calib DIR with representative images")
    tiles = []
    for path in sorted(p for p in Path(calib_dir).iterdir() if is_image_file(p)):
        for frame in read_image(path).frames:
            image = to_uint8(frame)
            tiles.append(enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=tile))))
    if not tiles:
        raise InputError(f"no images in {calib_dir} for int8 calibration")
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
