"""Checkpoint -> a shipped model's files: weights once (safetensors) + a weight-free graph (see samcell_rt.shipped).

The graph is exported unfolded (`trace_graph(fold=False)`): every initialiser is then exactly one
parameter under its own name, so the graph can drop the data and point at the weights file instead,
and the same weights file is what training starts from. Folding (transposes, conv + batch norm) is
left to onnxruntime when the complete file is made. Before anything is written, the complete file is
made from the new pair exactly as users will get it and checked against torch on the verification tiles.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.atomic import atomic_path, write_text_atomic
from ..runtime.contract import META_KEYS, PROPS, file_sha256
from ..runtime.engines.table import Precision
from ..shipped import GRAPH_SUFFIX, PARAM_PREFIX, WEIGHT_SOURCE, WEIGHTS_PROP, fill_graph, fold_constants
from . import TOLERANCE
from .checkpoints import _TIED
from .onnx import ExportError, ModelProps, graph_maps, model_metadata, trace_graph, verification_tiles


@dataclass
class ShippedExport:
    """The files written and what the check measured (sha256 values go to the registry and the card)."""

    weights: Path
    graph: Path
    record: Path
    weights_sha256: str
    graph_sha256: str
    max_abs_error: float


def export_weight_free(checkpoint: str | Path, out_dir: str | Path, props: ModelProps = ModelProps(), *,
                       opset: int = 17, config=None) -> ShippedExport:
    """Write NAME.safetensors, NAME.json and NAME.graph.onnx to `out_dir`, verified against torch (NAME:
    `props.name`, else the checkpoint's stem); always fp32, the precision training starts from."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    from .checkpoints import load_checkpoint, read_state_dict
    from .model import SamCellTiles

    props = props.named(checkpoint)
    loaded = load_checkpoint(checkpoint, config)
    wrapper = SamCellTiles(loaded.model, props.tile).eval()
    stored = read_state_dict(loaded.source) if loaded.source.suffix == ".safetensors" else {}
    out_dir = Path(out_dir)
    files = (out_dir / f"{props.name}.safetensors", out_dir / f"{props.name}{GRAPH_SUFFIX}",
             out_dir / f"{props.name}.json")
    tiles = verification_tiles(props.tile)
    with torch.no_grad():
        expected = np.concatenate([wrapper(torch.from_numpy(t[None])).numpy() for t in tiles])
    with tempfile.TemporaryDirectory(prefix="samcell-weightfree-") as tmp:
        tmp = Path(tmp)
        trace_graph(wrapper, tmp / "unfolded.onnx", props.tile, opset, fold=False)
        model = onnx.load(str(tmp / "unfolded.onnx"))
        in_graph = {i.name.removeprefix(PARAM_PREFIX) for i in model.graph.initializer}
        weights = _weights(loaded.model.state_dict(), stored, in_graph)
        _point_at_weights(model, weights, files[0].name, TensorProto)
        _save_weights(weights, tmp / files[0].name)
        metadata = model_metadata(loaded, props, Precision.FP32)
        # the graph's source is the weights file shipped beside it (the original checkpoint: NAME.json)
        metadata[PROPS["source_sha256"]] = metadata[WEIGHTS_PROP] = file_sha256(tmp / files[0].name)
        helper.set_model_props(model, metadata)
        onnx.save(model, str(tmp / files[1].name))
        fold_constants(fill_graph(tmp / files[1].name, tmp / files[0].name), tmp / "complete.onnx")
        error = float(np.abs(graph_maps(tmp / "complete.onnx", tiles).astype(np.float64) - expected).max())
        if not error <= TOLERANCE[Precision.FP32]:
            raise ExportError(f"the weight-free graph of {checkpoint}, filled, differs from torch by {error:.3g} "
                              f"(tolerance {TOLERANCE[Precision.FP32]}); not written")
        helper.set_model_props(model, metadata | {META_KEYS["verified_max_abs_error"]: f"{error:.3g}"})
        onnx.save(model, str(tmp / files[1].name))
        for made, final in zip((tmp / files[0].name, tmp / files[1].name), files[:2]):
            with atomic_path(final) as part:
                part.write_bytes(made.read_bytes())
    recipe = loaded.recipe or {}
    record = {"sam_config": loaded.model.config.to_dict(), "data": recipe.get("data", {}),
              "source": {"checkpoint": str(loaded.source), "sha256": loaded.sha256, "layout": loaded.layout,
                         "provenance": recipe.get("provenance")}}
    write_text_atomic(files[2], json.dumps(record, indent=2, default=str) + "\n")
    return ShippedExport(*files, file_sha256(files[0]), file_sha256(files[1]), error)


def _weights(state: dict, stored: dict, in_graph: set[str]) -> dict:
    """The parameters to ship: each in the dtype its source file stored it in (fp32 otherwise); of
    SamModel's two tied tensors only the one the graph reads (the checkpoint loader restores the other)."""
    return {k: v.detach().to(stored[k].dtype if k in stored else v.dtype).contiguous()
            for k, v in state.items() if k not in _TIED or k in in_graph}


def _point_at_weights(model, weights: dict, weights_name: str, TensorProto) -> None:
    """Drop each parameter initialiser's data; name the weights file and tensor that fill it instead."""
    for init in model.graph.initializer:
        key = init.name.removeprefix(PARAM_PREFIX)
        if not init.name.startswith(PARAM_PREFIX) or key not in weights:
            continue
        init.ClearField("raw_data")
        del init.float_data[:]
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for entry_key, value in (("location", weights_name), (WEIGHT_SOURCE, key)):
            entry = init.external_data.add()
            entry.key, entry.value = entry_key, value


def _save_weights(weights: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(weights, str(path))
