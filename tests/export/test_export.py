"""Checkpoint loading and verified ONNX export with a tiny SAM configuration."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from samcell_rt.export.checkpoints import CheckpointError, load_checkpoint, meta_to_transformers
from samcell_rt.export.model import SamCellTiles, tiny_config
from samcell_rt.export.onnx import TOLERANCE, ExportError, export_model, verification_tiles
from samcell_rt.runtime.contract import PROPS, file_sha256
from samcell_rt.runtime.engines import open_engine


def test_onnx_matches_torch_and_carries_the_contract_metadata(tiny_onnx, tiny_checkpoint, tiny_sam):
    props = {p.key: p.value for p in onnx.load(tiny_onnx).metadata_props}
    assert props[PROPS["name"]] == "tiny-test" and props[PROPS["version"]] == "7"
    assert props[PROPS["source_sha256"]] == file_sha256(tiny_checkpoint)
    assert props[PROPS["preprocess"]] == "reference-v1" and props[PROPS["tile"]] == "256"
    engine = open_engine(tiny_onnx)  # the runtime accepts it
    tiles = verification_tiles(seed=5)  # other tiles than the export checked
    with torch.no_grad():
        expected = SamCellTiles(tiny_sam).eval()(torch.from_numpy(tiles)).numpy()
    for batch in (1, 3):  # dynamic batch
        got = engine.run(tiles[:batch])
        assert np.abs(got - expected[:batch]).max() <= TOLERANCE["fp32"]
    assert expected.std() > 0.01  # the model really responds to its input


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_exports_verify(tmp_path, tiny_checkpoint, precision):
    report = export_model(tiny_checkpoint, tmp_path / f"m-{precision}.onnx", precision=precision, config=tiny_config())
    assert report.max_abs_error <= TOLERANCE[precision]
    graph = onnx.load(tmp_path / f"m-{precision}.onnx").graph
    if precision == "fp16":  # LayerNorm, Softmax and the final sigmoid stay fp32
        model = onnx.shape_inference.infer_shapes(onnx.load(tmp_path / "m-fp16.onnx"))
        types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.input,
                                                                 *model.graph.output]}
        types.update({t.name: t.data_type for t in model.graph.initializer})
        kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax", "Sigmoid")]
        assert kept and all(types.get(n.input[0]) == onnx.TensorProto.FLOAT for n in kept)
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)  # weights are fp16
    else:
        assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for n in graph.node)


def test_failed_verification_writes_nothing(tmp_path, tiny_checkpoint, monkeypatch):
    import samcell_rt.export.onnx as export_module

    monkeypatch.setitem(export_module.TOLERANCE, "fp32", 0.0)  # nothing can meet a zero tolerance
    monkeypatch.setattr(export_module, "_max_error", lambda *a: 0.25)
    with pytest.raises(ExportError, match="differs from torch by 0.25"):
        export_model(tiny_checkpoint, tmp_path / "bad.onnx", config=tiny_config())
    assert not list(tmp_path.iterdir())


def test_published_key_layout_loads(tiny_checkpoint, tiny_sam):
    """A .pt with exactly SamModel's own key names (the published SAMCell format) loads strictly."""
    loaded = load_checkpoint(tiny_checkpoint, tiny_config())
    assert loaded.layout == "samcell"
    for key, value in tiny_sam.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_safetensors_and_hf_folder(tmp_path, tiny_sam):
    from safetensors.torch import save_file

    state = {k: v.clone().contiguous() for k, v in tiny_sam.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    assert load_checkpoint(tmp_path / "w.safetensors", tiny_config()).layout == "samcell"
    del state["shared_image_embedding.positional_embedding"]  # as deduplicating savers store tied weights
    save_file(state, tmp_path / "dedup.safetensors")
    assert load_checkpoint(tmp_path / "dedup.safetensors", tiny_config()).layout == "samcell"
    folder = tmp_path / "hf"
    tiny_sam.save_pretrained(folder)
    loaded = load_checkpoint(folder)  # config.json travels with the weights
    assert loaded.layout == "hf-folder"
    assert loaded.model.config.vision_config.hidden_size == 32


def test_corrupt_and_wrong_checkpoints_give_clear_errors(tmp_path, tiny_sam):
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.pt: cannot be read as weights"):
        load_checkpoint(tmp_path / "junk.pt", tiny_config())
    state = dict(tiny_sam.state_dict())
    state["extra.weight"] = state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys \(e.g. mask_decoder.iou_token.weight\).*extra.weight"):
        load_checkpoint(tmp_path / "wrong.pt", tiny_config())
    with pytest.raises(CheckpointError, match="other shapes"):
        load_checkpoint(tmp_path / "wrong.pt")  # tiny weights into a ViT-B config


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.pt", tiny_config())


def test_trainer_checkpoint_with_sidecar_config(tmp_path, tiny_sam):
    from safetensors.torch import save_file

    save_file({k: v.clone().contiguous() for k, v in tiny_sam.state_dict().items()}, tmp_path / "best.safetensors")
    (tmp_path / "best.json").write_text(json.dumps({"sam_config": tiny_sam.config.to_dict(), "recipe": {}}))
    loaded = load_checkpoint(tmp_path / "best.safetensors")
    assert loaded.layout == "trainer"


def test_meta_rename_covers_every_key(tiny_sam):
    """Every SamModel key is reachable from a Meta-style name (checked against segment-anything below)."""
    renamed = meta_to_transformers({"image_encoder.blocks.0.norm1.weight": 1,
                                    "mask_decoder.output_hypernetworks_mlps.2.layers.1.bias": 2,
                                    "mask_decoder.iou_prediction_head.layers.2.weight": 3,
                                    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": 4,
                                    "mask_decoder.transformer.norm_final_attn.weight": 5})
    assert renamed == {"vision_encoder.layers.0.layer_norm1.weight": 1,
                       "mask_decoder.output_hypernetworks_mlps.2.layers.0.bias": 2,
                       "mask_decoder.iou_prediction_head.proj_out.weight": 3,
                       "prompt_encoder.shared_embedding.positional_embedding": 4,
                       "shared_image_embedding.positional_embedding": 4,
                       "mask_decoder.transformer.layer_norm_final_attn.weight": 5}


def test_export_command_line(tmp_path, tiny_checkpoint, blob_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "samcell_rt.cli", *args], capture_output=True, text=True,
                               timeout=600)

    proc = cli("export", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"), "--config", "tiny", "--name", "t")
    assert proc.returncode == 0, proc.stderr
    assert "max abs error vs torch" in proc.stdout
    image = tmp_path / "img.tif"
    import tifffile

    from samcell_rt.synthetic import as_dtype, synthetic_cells

    tifffile.imwrite(image, as_dtype(synthetic_cells((300, 300), count=5)[0], "uint16"))
    proc = cli("segment", str(image), "--model", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "img_labels.tif").exists()
    (tmp_path / "bad.pt").write_bytes(b"nope")
    proc = cli("export", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "x.onnx"), "--config", "tiny")
    assert proc.returncode == 2 and "bad.pt" in proc.stderr and not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_full_vit_b_export_verifies_and_segments(tmp_path):
    """Full SAM ViT-B (random weights, published checkpoint format): export, verify, segment."""
    from samcell_rt import load_model
    from samcell_rt.export.model import random_sam, vit_b_config
    from samcell_rt.synthetic import synthetic_cells

    torch.save(random_sam(vit_b_config()).state_dict(), tmp_path / "samcell-vitb.pt")
    report = export_model(tmp_path / "samcell-vitb.pt", tmp_path / "vitb.onnx")
    assert report.max_abs_error <= TOLERANCE["fp32"]
    result = load_model(str(tmp_path / "vitb.onnx")).segment(synthetic_cells((256, 300), count=3)[0])
    assert result.distance.shape == (256, 300)


def test_fp16_graph_from_the_checkpoint_keeps_the_models_thresholds_sizes_and_provenance(tmp_path, tiny_checkpoint):
    """`build-engine --checkpoint` makes its fp16 graph from the checkpoint: the model's own peak, fill,
    trained cell sizes and adapt provenance must reach it (they used to fall back to the paper's
    defaults, so the engine would segment with other thresholds than the model file)."""
    from samcell_rt.export.fp16 import derive_fp16
    from samcell_rt.export.onnx import ModelProps
    from samcell_rt.runtime.contract import META_KEYS, read_props

    fp32 = tmp_path / "m.onnx"
    props = ModelProps(name="mine", version="4", peak=0.31, fill=0.07, diameter=(20.0, (10.0, 30.0)))
    export_model(tiny_checkpoint, fp32, props, config=tiny_config(), extra={META_KEYS["adapted_from"]: "parent"})
    derive_fp16(fp32, tmp_path / "m16.onnx", checkpoint=tiny_checkpoint, config=tiny_config())
    before, after = read_props(fp32), read_props(tmp_path / "m16.onnx")
    for key in ("name", "version", "peak_threshold", "fill_threshold", "diameter", "diameter_range", "adapted_from"):
        assert after[META_KEYS[key]] == before[META_KEYS[key]], key
    assert after[META_KEYS["precision"]] == "fp16" and after[META_KEYS["fp16_source"]] == "checkpoint"
