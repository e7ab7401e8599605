"""Half-precision ONNX graphs: fp16 compute graphs for TensorRT-RTX, and fp16 storage of fp32 weights.

TensorRT-RTX is strongly typed: it has no FP16 builder flag and builds each layer in the element
type the ONNX graph gives it. An fp16 engine therefore needs an fp16 graph whose types are
consistent: uint8 input, float32 output, fp16 everywhere else except LayerNorm, Softmax, the
sigmoid and their helpers, which stay fp32 behind explicit casts (`FP32_OPS_IN_FP16`). Such a graph
is derived here from an fp32 graph and checked in onnxruntime against it before anyone builds from it.

The shipped fp32 model stores its weights as fp16 with a Cast to fp32 in front of each (half the
file, same fp32 arithmetic; onnxruntime folds the casts when a session starts). `fold_weight_casts`
turns such a graph back into plain fp32 initializers, so conversions see ordinary weights.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.contract import META_KEYS, read_props
from ..runtime.engines.table import Precision
from . import TOLERANCE
from .onnx import FP32_OPS_IN_FP16, ExportError, ModelProps, export_model, graph_maps, verification_tiles

# Initializers smaller than this stay fp32: scalars and shape-like constants gain nothing from fp16.
HALF_MIN_ELEMENTS = 64
HALF_SUFFIX = "__fp16"


@dataclass
class Fp16Graph:
    """An fp16 graph written to `path`, how it was made, and its error against the fp32 graph."""

    path: Path
    source: str  # "checkpoint" or "converted"
    max_abs_error: float


def half_weights(model):
    """Store fp32 weights as fp16 initializers, each cast back to fp32 by a Cast node at graph start."""
    from onnx import TensorProto, helper, numpy_helper

    casts, kept = [], []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < HALF_MIN_ELEMENTS:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + HALF_SUFFIX)
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"load_{init.name}"))
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def fold_weight_casts(model):
    """Undo `half_weights`: every Cast(fp16 initializer -> fp32) becomes an fp32 initializer."""
    from onnx import TensorProto, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    folded, nodes = set(), []
    for node in model.graph.node:
        source = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if source is None or source.data_type != TensorProto.FLOAT16 or to != TensorProto.FLOAT:
            nodes.append(node)
            continue
        model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(source).astype(np.float32), node.output[0]))
        folded.add(source.name)
    users = {name for node in nodes for name in node.input}
    keep = [i for i in model.graph.initializer if i.name not in folded or i.name in users]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def convert_to_fp16(model):
    """The fp16 compute graph of an fp32 graph (uint8 in, fp32 out, normalisations kept fp32)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(fold_weight_casts(model), keep_io_types=True, op_block_list=FP32_OPS_IN_FP16)


# what describes the graph itself rather than the model: everything else (its thresholds, trained cell
# sizes, adapt provenance) carries over from the fp32 model to its fp16 graph made from the checkpoint
GRAPH_OWN = {META_KEYS[k] for k in ("precision", "verified_max_abs_error", "source_sha256", "checkpoint_layout",
                                    "exporter")}


def derive_fp16(onnx_path: str | Path, out: str | Path, checkpoint: str | Path | None = None, config=None) -> Fp16Graph:
    """Write the fp16 graph of an fp32 model to `out`, checked in onnxruntime against the fp32 graph.

    From the checkpoint when one is given (the export's own fp16 path, verified against torch too),
    else by converting the fp32 ONNX graph. Raise ExportError when the fp16 graph is over tolerance.
    """
    import onnx

    onnx_path, out = Path(onnx_path), Path(out)
    if checkpoint is not None:
        props = read_props(onnx_path)
        stored = ModelProps(name=props.get(META_KEYS["name"]), version=props.get(META_KEYS["version"], "1"),
                            tile=int(props.get(META_KEYS["tile"], 256)))
        export_model(checkpoint, out, stored, precision=Precision.FP16, config=config,
                     extra={key: value for key, value in props.items() if key not in GRAPH_OWN})
        source = "checkpoint"
    else:
        onnx.save(convert_to_fp16(onnx.load(str(onnx_path))), str(out))
        source = "converted"
    error = graph_error(out, onnx_path)
    if not error <= TOLERANCE[Precision.FP16]:
        raise ExportError(f"fp16 graph derived from {onnx_path} differs from the fp32 graph by {error:.3g} "
                          f"(tolerance {TOLERANCE[Precision.FP16]}); no fp16 engine built")
    _set_props(out, {META_KEYS["precision"]: Precision.FP16, META_KEYS["fp16_source"]: source,
                     META_KEYS["fp16_max_abs_error_vs_fp32"]: f"{error:.3g}"})
    return Fp16Graph(out, source, error)


def graph_error(candidate: str | Path, reference: str | Path, tile: int | None = None) -> float:
    """Max abs difference of two graphs' distance maps on the verification tiles, in onnxruntime CPU."""
    tiles = verification_tiles(tile or int(read_props(Path(reference)).get(META_KEYS["tile"], 256)))
    got, expected = graph_maps(candidate, tiles), graph_maps(reference, tiles)
    return float(np.abs(got.astype(np.float64) - expected).max())


def _set_props(path: Path, changes: dict[str, str]) -> None:
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props} | changes
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.save(model, str(path))


def fp16_graph_for(onnx_path: Path, tmp: str | Path | None = None, checkpoint=None, config=None) -> Fp16Graph:
    """`onnx_path` itself when it already is an fp16 graph, else a derived one written under `tmp`."""
    props = read_props(onnx_path)
    if props.get(META_KEYS["precision"]) == Precision.FP16:  # exported as fp16: verified against torch then
        return Fp16Graph(onnx_path, "given", float(props.get(META_KEYS["verified_max_abs_error"], "nan")))
    folder = Path(tmp or tempfile.mkdtemp(prefix="samcell-fp16-"))
    return derive_fp16(onnx_path, folder / f"{onnx_path.stem}-fp16.onnx", checkpoint, config)
