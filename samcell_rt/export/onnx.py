"""Checkpoint -> one verified ONNX model following the samcell-rt contract.

The graph is exported from the `SamCellTiles` wrapper (TorchScript exporter: its graphs ran about
10 % faster than the dynamo exporter's in an early, unrecorded CPU comparison), simplified with onnxslim,
optionally converted (fp16 keeps LayerNorm, Softmax and the sigmoid in fp32; int8 is onnxruntime
dynamic quantisation for CPUs), and checked against torch on random and synthetic tiles before the
file is written. A graph over tolerance is never written.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import SamcellError
from ..runtime import DEFAULT_FILL, DEFAULT_PEAK
from ..runtime.atomic import atomic_path
from ..runtime.contract import DIAMETER_PROPS, INPUT_NAME, META_KEYS, OUTPUT_NAME, PREPROCESS, PROPS
from ..runtime.engines.table import Precision
from ..version import __version__
from . import TOLERANCE

FP32_OPS_IN_FP16 = ["LayerNormalization", "Softmax", "Sigmoid", "ReduceMean", "Pow", "Sqrt", "Erf"]


class ExportError(SamcellError):
    """The exported graph failed verification or could not be produced."""


@dataclass
class ExportReport:
    """What `export_model` did, for the CLI and the model card."""

    path: Path
    precision: Precision
    max_abs_error: float
    tolerance: float
    tiles_checked: int
    metadata: dict[str, str] = field(default_factory=dict)


def verification_tiles(tile: int = 256, seed: int = 0) -> np.ndarray:
    """(4, 1, T, T) uint8: two random tiles and two synthetic-cell tiles after the contrast step."""
    from ..runtime.preprocess import enhance_tiles, to_uint8
    from ..synthetic import synthetic_cells

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (2, tile, tile), dtype=np.uint8)
    cells = [to_uint8(synthetic_cells((tile, tile), count=6, radius=tile // 20, seed=seed + i)[0]) for i in range(2)]
    return np.concatenate([noise, enhance_tiles(np.stack(cells))])[:, None]


# Constant folding stops at this size: the prompt-free dense embedding and the image-wide positional
# encoding (1 x 256 x 64 x 64 each, 4 MiB) stay cheap Expand ops instead of 8 MiB of stored floats,
# which would take SAMCell-Lite's fp32 file past 50 MB.
FOLD_LIMIT_BYTES = 4_000_000


@dataclass(frozen=True)
class ModelProps:
    """What an export stores in the model for the runtime besides what it measures: the contract's
    name, version, tile, thresholds and trained cell diameters, the same for the ONNX and the
    weight-free export."""

    name: str | None = None  # None: the checkpoint's file stem
    version: str = "1"
    tile: int = 256
    peak: float = DEFAULT_PEAK
    fill: float = DEFAULT_FILL
    # (typical, (low, high)) px, for --diameter rescaling; None: the trainer's record beside the
    # checkpoint, and models without one are never rescaled automatically
    diameter: tuple[float, tuple[float, float]] | None = None

    def named(self, checkpoint: str | Path) -> ModelProps:
        """These props with the name filled in from the checkpoint when none was given."""
        return replace(self, name=self.name or Path(checkpoint).stem)


def export_model(checkpoint: str | Path, out: str | Path, props: ModelProps = ModelProps(), *,
                 precision: Precision = Precision.FP32, opset: int = 17, config=None,
                 extra: dict[str, str] | None = None) -> ExportReport:
    """Export, convert, verify and (only if verified) write the model; return the report.

    `config` is the SAM configuration for checkpoints that carry none; `extra` adds metadata props
    (an adapted model's parent, data hash and scores).
    """
    import torch

    from .checkpoints import load_checkpoint
    from .model import SamCellTiles

    if precision not in TOLERANCE:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(TOLERANCE)}")
    loaded = load_checkpoint(checkpoint, config)
    wrapper = SamCellTiles(loaded.model, props.tile).eval()
    tiles = verification_tiles(props.tile)
    with torch.no_grad():  # one tile at a time: a ViT-B batch at 1024 px needs GBs of attention maps
        expected = np.concatenate([wrapper(torch.from_numpy(tile[None])).numpy() for tile in tiles])
    metadata = model_metadata(loaded, props.named(checkpoint), precision)
    metadata |= extra or {}
    with tempfile.TemporaryDirectory() as tmp:
        model = _trace(wrapper, Path(tmp), props.tile, opset)
        model = _convert(model, precision, Path(tmp))
        error = _max_error(model, tiles, expected)
        metadata[META_KEYS["verified_max_abs_error"]] = f"{error:.3g}"
        if not error <= TOLERANCE[precision]:
            raise ExportError(f"{precision} graph of {checkpoint} differs from torch by {error:.3g} "
                              f"(tolerance {TOLERANCE[precision]}); not written")
        _save(model, Path(out), metadata)
    return ExportReport(Path(out), precision, error, TOLERANCE[precision], len(tiles), metadata)


def model_metadata(loaded, props: ModelProps, precision: Precision) -> dict[str, str]:
    """The contract's metadata for a graph exported from this loaded checkpoint (`props` named)."""
    return {
        PROPS["name"]: props.name, PROPS["version"]: props.version, PROPS["tile"]: str(props.tile),
        PROPS["peak_threshold"]: str(props.peak), PROPS["fill_threshold"]: str(props.fill),
        PROPS["source_sha256"]: loaded.sha256, PROPS["preprocess"]: PREPROCESS,
        META_KEYS["precision"]: precision, META_KEYS["checkpoint_layout"]: loaded.layout,
        META_KEYS["exporter"]: f"samcell-rt {__version__}",
        **_diameter_props(props.diameter or _trained_diameter(loaded.recipe)),
    }


def _trained_diameter(record: dict | None) -> tuple[float, tuple[float, float]] | None:
    """(typical, (low, high)) from a trainer checkpoint's record, when it has one."""
    sizes = ((record or {}).get("data") or {}).get("cell_diameter_px")
    return (sizes["typical"], tuple(sizes["range"])) if sizes else None


def _diameter_props(diameter: tuple[float, tuple[float, float]] | None) -> dict[str, str]:
    if diameter is None:
        return {}
    typical, (low, high) = diameter
    if not 0 < low <= typical <= high:
        raise ExportError(f"cell diameter {typical} px must lie within its range {low}..{high} px")
    return {DIAMETER_PROPS["diameter"]: f"{typical:g}", DIAMETER_PROPS["diameter_range"]: f"{low:g},{high:g}"}


def _trace(wrapper, tmp: Path, tile: int, opset: int):
    import onnx
    import onnxslim

    path = tmp / "traced.onnx"
    trace_graph(wrapper, path, tile, opset)
    return onnxslim.slim(onnx.load(str(path)), size_threshold=FOLD_LIMIT_BYTES)


def trace_graph(wrapper, path: Path, tile: int, opset: int, fold: bool = True, output_name: str = OUTPUT_NAME) -> None:
    """TorchScript export of the wrapper (dynamic batch). `fold=False` keeps every parameter as its own
    named initialiser: no constant folding, and batch norm exported as itself rather than folded into
    the convolution before it (TrainingMode.PRESERVE on a model in eval mode). `output_name` names the
    output of wrappers that return something else than distance maps (adapt's frozen encoder)."""
    import torch

    dummy = torch.zeros((2, 1, tile, tile), dtype=torch.uint8)
    mode = torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE
    with warnings.catch_warnings(), torch.no_grad():  # tracer shape-check warnings are expected
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[output_name],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=opset, dynamo=False, do_constant_folding=fold, training=mode)


def _convert(model, precision: Precision, tmp: Path):
    import onnx

    if precision == Precision.FP16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(model, keep_io_types=True, op_block_list=FP32_OPS_IN_FP16)
    if precision == Precision.INT8:
        from ..shipped import quantize_int8

        src, dst = tmp / "fp32.onnx", tmp / "int8.onnx"
        onnx.save(model, str(src))
        quantize_int8(src, dst)
        return onnx.load(str(dst))
    return model


def graph_maps(model, tiles: np.ndarray) -> np.ndarray:
    """Distance maps of a graph (ModelProto or path) in onnxruntime CPU, two tiles per call.

    Batches of 2 (the traced size was 2, so 1 is checked by the runtime tests): bounded memory.
    """
    import onnxruntime as ort

    source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: tiles[i : i + 2]})[0] for i in range(0, len(tiles), 2)])


def _max_error(model, tiles: np.ndarray, expected: np.ndarray) -> float:
    got = graph_maps(model, tiles)
    if got.shape != expected.shape:
        raise ExportError(f"exported graph returns shape {got.shape}, expected {expected.shape}")
    return float(np.abs(got.astype(np.float64) - expected).max())


def _save(model, out: Path, metadata: dict[str, str]) -> None:
    import onnx
    from onnx import helper

    del model.metadata_props[:]
    helper.set_model_props(model, metadata)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
