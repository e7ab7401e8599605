"""Recover SAMCell-Lite version 4's torch parameters from the ONNX file that shipped it (one-off, kept for provenance).

Version 4's training checkpoint (`best.safetensors`, sha256 fae00275…e2d3) was lost with the machine
that trained it; only its export `samcell_rt/models/samcell-lite.onnx` (commit 95f803a) survived. That
graph went through onnxslim, so its initialisers are not the parameters: linear weights are stored
transposed, convolution + batch norm pairs are folded into one weight and bias, the attention-bias
tables are expanded by their index, the mask tokens are concatenated, and every initialiser of 64+
elements was stored as fp16 (cast back to fp32 at load).

Method: a *probe* model (the same architecture with every parameter element set to a value no other
element has) is exported through the project's own export path (`export.onnx._trace`,
the function that made the shipped graph). Its graph has the same nodes and initialiser names as the
shipped one (checked), and since the probe's values are known, every initialiser element can be traced
back to the parameter element it was copied from (value lookup). Reading the shipped graph at the same
positions gives version 4's parameters (an element used several times is read at its first occurrence
and all occurrences are checked to agree). The folded convolutions are matched by recomputing the
probe's fold. Only the product of a convolution's weight and its batch norm's scale reaches the graph,
so version 4's weight and bias are expressed with LiteMedSAM's running statistics (the trainer keeps
batch norm in eval mode, so they never changed) and LiteMedSAM's scale: the recovered parameters keep
the magnitudes the optimiser saw, and for the stages frozen in training they come out as LiteMedSAM's.
Parameters that do not reach the graph (the prompt encoder, unused without prompts, and the IoU
head) keep LiteMedSAM's values: the trainer freezes the prompt encoder and no loss reaches the IoU
head, so they never changed in training.

Verification: the recovered model is exported again through the same path and every initialiser is
compared with the shipped graph; its distance maps (torch) are compared with the shipped graph's
(onnxruntime) on the export's verification tiles and on real images.

    PYTHONPATH=$PWD python scripts/recover_checkpoint.py --onnx samcell-lite-v4.onnx \
        --out samcell-lite-v4.safetensors --report benchmarks/results/lite_v4_recovery_cpu.json
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

# the graph reads the positional encoding's frequencies under the first name
TIED = ("shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding")
PROBE_FIRST_BITS = int(np.float32(2.0**16).view(np.int32))  # 65536.0; two octaves of distinct values


def shipped_initialisers(path: Path):
    """The shipped graph with its fp16-stored weights turned back into fp32 initialisers."""
    import onnx
    from onnx import numpy_helper

    from samcell_rt.export.fp16 import fold_weight_casts

    model = fold_weight_casts(onnx.load(str(path)))
    return model, {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def probe_model():
    """The lite model with every parameter element set to its own value: consecutive float32 bit patterns
    from 2**16 up (each tensor once, tied ones included). No constant of the graph lives in that range,
    so a value found in an exported initialiser names the one element it was copied from."""
    import torch

    from samcell_rt.export.checkpoints import load_checkpoint

    sam = load_checkpoint("litemedsam").model
    next_bits, seen = PROBE_FIRST_BITS, set()
    with torch.no_grad():
        for value in sam.state_dict().values():
            if not value.is_floating_point() or value.data_ptr() in seen:
                continue
            seen.add(value.data_ptr())
            bits = np.arange(next_bits, next_bits + value.numel(), dtype=np.int32)
            value.copy_(torch.from_numpy(bits.view(np.float32).reshape(value.shape)))
            next_bits += value.numel()
    if next_bits >= PROBE_FIRST_BITS + (2 << 23):
        raise click.ClickException("more parameter elements than distinct probe values")
    return sam


def export_graph(sam):
    """The graph the project's export path makes of this model, before any storage conversion."""
    from samcell_rt.export.model import SamCellTiles
    from samcell_rt.export.onnx import _trace

    with tempfile.TemporaryDirectory() as tmp:
        return _trace(SamCellTiles(sam, 256).eval(), Path(tmp), 256, 17)


def graph_initialisers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def same_structure(a, b) -> bool:
    """Same nodes (op, inputs, outputs) in the same order and the same initialiser names."""
    def nodes(m):
        return [(n.op_type, tuple(n.input), tuple(n.output)) for n in m.graph.node]

    return nodes(a) == nodes(b) and {i.name for i in a.graph.initializer} == {i.name for i in b.graph.initializer}


def conv_bn_pairs(sam) -> dict[str, tuple]:
    """Module path -> the ConvBN module, for every convolution + batch norm pair of the encoder."""
    from samcell_rt.export.tinyvit import ConvBN

    return {name: module for name, module in sam.named_modules() if isinstance(module, ConvBN)}


def folded(module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight, bias, scale) of a ConvBN folded as the exporter folds eval-mode batch norm."""
    bn = module.bn
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach()
    weight = (module.c.weight * scale[:, None, None, None]).detach()
    bias = (bn.bias - bn.running_mean * scale).detach()
    return weight.numpy(), bias.numpy(), scale.numpy()


def match_folds(sam, inits: dict[str, np.ndarray]) -> dict[str, tuple[str, str]]:
    """ConvBN path -> (weight initialiser, bias initialiser) in the probe graph, by recomputing the fold."""
    found = {}
    for path, module in conv_bn_pairs(sam).items():
        weight, bias, _ = folded(module)
        names = [n for n, a in inits.items() if a.shape == weight.shape and np.allclose(a, weight, rtol=1e-5, atol=1e-7)]
        bnames = [n for n, a in inits.items() if a.shape == bias.shape and np.allclose(a, bias, rtol=1e-5, atol=1e-6)]
        if len(names) != 1 or len(bnames) != 1:
            raise click.ClickException(f"{path}: folded conv found {len(names)}x, bias {len(bnames)}x")
        found[path] = (names[0], bnames[0])
    return found


class ValueIndex:
    """Every float element of a state dict, sorted by value: value -> (parameter, flat position)."""

    def __init__(self, state: dict) -> None:
        storages, self.keys = set(), []
        for key, value in state.items():  # tied tensors once, under their first name
            if value.is_floating_point() and value.data_ptr() not in storages:
                storages.add(value.data_ptr())
                self.keys.append(key)
        arrays = [state[k].detach().numpy().astype(np.float32).ravel() for k in self.keys]
        self.offsets = np.cumsum([0] + [a.size for a in arrays])
        values = np.concatenate(arrays)
        self.order = np.argsort(values, kind="stable")
        self.sorted = values[self.order]
        duplicate = np.zeros(values.size, bool)
        same = self.sorted[1:] == self.sorted[:-1]
        duplicate[1:] |= same
        duplicate[:-1] |= same
        self.ambiguous = duplicate  # in sorted order: values shared by two elements prove nothing
        self.size = values.size

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Global element index of each value, -1 where no element (or more than one) has it."""
        pos = np.clip(np.searchsorted(self.sorted, values), 0, self.size - 1)
        hit = (self.sorted[pos] == values) & ~self.ambiguous[pos]
        return np.where(hit, self.order[pos], -1)

    def slices(self) -> dict[str, slice]:
        return {k: slice(self.offsets[i], self.offsets[i + 1]) for i, k in enumerate(self.keys)}


def recover(probe_inits: dict, shipped: dict, index: ValueIndex, skip: set[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, known mask, disagreements): each parameter element read from the shipped graph at the
    position where the probe graph holds that element's value. An element used several times is read
    at its first occurrence; every other occurrence must hold the same value (else a disagreement)."""
    values = np.zeros(index.size, np.float32)
    known = np.zeros(index.size, bool)
    disagreements = 0
    for name, probe in probe_inits.items():
        if name in skip or probe.dtype != np.float32:
            continue
        where = index.lookup(probe.ravel())
        hit = where >= 0
        targets, got = where[hit], shipped[name].astype(np.float32).ravel()[hit]
        unique, first = np.unique(targets, return_index=True)
        fresh = ~known[unique]
        values[unique[fresh]] = got[first][fresh]
        known[unique[fresh]] = True
        disagreements += int((values[targets] != got).sum())
    return values, known, disagreements


def recovered_state(base, probe, probe_graph, shipped: dict) -> tuple[dict, dict]:
    """Version 4's state dict (torch tensors) and a per-parameter account of where each came from."""
    import torch

    probe_inits = graph_initialisers(probe_graph)
    folds = match_folds(probe, probe_inits)
    index = ValueIndex(probe.state_dict())
    values, known, disagreements = recover(probe_inits, shipped, index, {n for pair in folds.values() for n in pair})
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    account = {"from_graph": [], "from_fold": [], "fold_scale": [], "from_litemedsam": [], "partial": [],
               "disagreements": disagreements}
    for key, part in index.slices().items():
        have = known[part]
        if have.all():
            state[key] = torch.from_numpy(values[part].copy()).view_as(state[key])
            account["from_graph"].append(key)
        elif have.any():
            account["partial"].append(f"{key}: {int(have.sum())}/{have.size}")
        else:
            account["from_litemedsam"].append(key)
    base_modules = conv_bn_pairs(base)
    for path, (weight_name, bias_name) in folds.items():
        # W_v4 * s = folded weight and beta_v4 - mean * s = folded bias, with LiteMedSAM's s and mean
        _, _, scale = folded(base_modules[path])
        mean = base_modules[path].bn.running_mean.detach().numpy()
        weight = shipped[weight_name].astype(np.float32) / scale[:, None, None, None]
        bias = shipped[bias_name].astype(np.float32) + mean * scale
        state[f"{path}.c.weight"] = torch.from_numpy(weight)
        state[f"{path}.bn.bias"] = torch.from_numpy(bias)
        account["from_fold"] += [f"{path}.c.weight", f"{path}.bn.bias"]
        account["fold_scale"] += [f"{path}.bn.{k}" for k in ("weight", "running_mean", "running_var")]
    account["from_litemedsam"] = [k for k in account["from_litemedsam"] if k not in account["from_fold"]]
    return state, account


def storage_dtypes(state: dict, keep_fp32: set[str]) -> dict:
    """fp16 storage like the shipped graph's (its weights of 64+ elements were fp16 already, so those are
    exact); fp32 for small tensors and `keep_fp32` (the folded convolutions' weights, biases and the
    batch-norm scale they were divided by: fp16 would round their product a second time)."""
    from samcell_rt.export.fp16 import HALF_MIN_ELEMENTS

    def half(key, value):
        return value.numel() >= HALF_MIN_ELEMENTS and key not in keep_fp32

    return {k: (v.half() if half(k, v) else v.float()) if v.is_floating_point() else v for k, v in state.items()}


def stored(array: np.ndarray) -> np.ndarray:
    """An initialiser as the shipped file stored it: fp16 from 64 elements up (export.fp16.half_weights)."""
    from samcell_rt.export.fp16 import HALF_MIN_ELEMENTS

    half = array.dtype == np.float32 and array.size >= HALF_MIN_ELEMENTS
    return array.astype(np.float16).astype(np.float32) if half else array


def map_difference(sam, onnx_path: Path, tiles: np.ndarray) -> float:
    """Max abs difference of the torch model's and the ONNX file's distance maps on these tiles."""
    import torch

    from samcell_rt.export.model import SamCellTiles
    from samcell_rt.export.onnx import graph_maps

    wrapper = SamCellTiles(sam.float().eval(), 256).eval()
    with torch.no_grad():
        ours = np.concatenate([wrapper(torch.from_numpy(tiles[i : i + 2])).numpy() for i in range(0, len(tiles), 2)])
    return float(np.abs(ours.astype(np.float64) - graph_maps(onnx_path, tiles)).max())


def real_tiles(count: int = 8) -> np.ndarray:
    """Tiles cut from real images (held-out bacteria and validation HeLa frames), contrast-enhanced."""
    from samcell_rt.train.packaged import load_packaged

    from samcell_rt.runtime.preprocess import enhance_tiles
    from samcell_rt.runtime.tiling import extract_tiles, tile_grid

    tiles = []
    for source in ("bacteria-heldout", "hela"):
        for sample in load_packaged(source)[:2]:
            tiles.append(enhance_tiles(extract_tiles(sample.image, tile_grid(*sample.image.shape, tile=256)))[:2])
    return np.concatenate(tiles)[:count, None]


def write_record(path: Path, graph, account: dict) -> None:
    """The trainer's record beside the weights: the model configuration (so `load_checkpoint` builds the
    lite model), the cell sizes `export` stores, the shipped metadata and where the values came from."""
    import json

    from samcell_rt.export.model import lite_config

    props = {p.key: p.value for p in graph.metadata_props}
    typical, (low, high) = float(props["samcell.diameter_px"]), map(float, props["samcell.diameter_range_px"].split(","))
    record = {"sam_config": lite_config().to_dict(),
              "data": {"cell_diameter_px": {"typical": typical, "range": [low, high]}},
              "shipped_metadata": props,
              "provenance": {"recovered_by": "scripts/recover_checkpoint.py", "from_graph": account["from_graph"],
                             "from_fold": account["from_fold"], "from_litemedsam": account["from_litemedsam"]}}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")


@click.command()
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="the shipped samcell-lite.onnx of version 4 (git show 95f803a:samcell_rt/models/samcell-lite.onnx)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="recovered .safetensors to write")
@click.option("--report", type=click.Path(path_type=Path), default=None)
def main(onnx_path: Path, out: Path, report: Path | None) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from samcell_rt.export.checkpoints import _fill_tied, load_checkpoint
    from samcell_rt.export.onnx import verification_tiles
    from samcell_rt.machine import emit_report, machine_info
    from samcell_rt.runtime.contract import file_sha256

    shipped_graph, shipped = shipped_initialisers(onnx_path)
    probe = probe_model()
    probe_graph = export_graph(probe)
    if not same_structure(probe_graph, shipped_graph):
        raise click.ClickException("the probe export's graph differs from the shipped graph: not the same export path")
    base = load_checkpoint("litemedsam").model
    state, account = recovered_state(base, probe, probe_graph, shipped)
    if account["partial"] or account["disagreements"]:
        raise click.ClickException(f"inconsistent recovery: {account['partial']} {account['disagreements']} disagreements")
    # the positional encoding's frequencies reach the maps through sin/cos of large arguments: kept exact
    to_save = storage_dtypes(state, {*account["from_fold"], *account["fold_scale"], TIED[0]})
    to_save.pop(TIED[1])  # SamModel ties the two; the checkpoint loader fills the second from the first
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in to_save.items()}, str(out),
              metadata={"samcell.recovered_from": file_sha256(onnx_path)})
    write_record(out.with_suffix(".json"), shipped_graph, account)
    recovered = load_checkpoint("litemedsam").model  # the architecture; the written file's values, as users get them
    recovered.load_state_dict(_fill_tied({k: v.float() for k, v in load_file(str(out)).items()}))
    # every initialiser of the recovered model's export against the shipped graph's
    again = graph_initialisers(export_graph(recovered))
    init_error = max(float(np.abs(stored(again[k]).astype(np.float64) - shipped[k]).max()) for k in again if again[k].size)
    maps = {"verification_tiles": map_difference(recovered, onnx_path, verification_tiles(256)),
            "real_tiles": map_difference(recovered, onnx_path, real_tiles())}
    result = {"machine": machine_info(), "onnx": str(onnx_path), "onnx_sha256": file_sha256(onnx_path),
              "out": str(out), "out_sha256": file_sha256(out), "out_bytes": out.stat().st_size,
              "parameters_from_graph": len(account["from_graph"]), "parameters_from_fold": len(account["from_fold"]),
              "parameters_from_litemedsam": account["from_litemedsam"],
              "reexport_max_abs_initialiser_diff_at_shipped_storage": init_error,
              "max_abs_map_diff_torch_vs_shipped_onnx": maps,
              "fp16_tensors": sum(v.dtype == torch.float16 for v in to_save.values()),
              "fp32_tensors": sum(v.dtype == torch.float32 for v in to_save.values())}
    emit_report(result, report)


if __name__ == "__main__":
    main()
