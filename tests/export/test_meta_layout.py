"""Meta's SAM checkpoint layout, checked against Meta's own `segment-anything` model code."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import partial

import pytest
import torch

from samcell_rt.export.checkpoints import load_checkpoint
from samcell_rt.export.model import tiny_config


def meta_modeling():
    """segment_anything.modeling without the package __init__ (which needs torchvision)."""
    spec = importlib.util.find_spec("segment_anything")
    if spec is None:
        pytest.skip("segment-anything (Meta's reference code) is not installed")
    if "segment_anything" not in sys.modules:
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.modeling")


def tiny_meta_sam(m):
    """Meta's Sam with the same shape as `tiny_config()`, random weights."""
    torch.manual_seed(3)
    encoder = m.ImageEncoderViT(depth=2, embed_dim=32, img_size=1024, mlp_ratio=2.0, num_heads=2, out_chans=32,
                                patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,),
                                window_size=7, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    prompt = m.PromptEncoder(embed_dim=32, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                             mask_in_chans=16)
    decoder = m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(
        depth=2, embedding_dim=32, mlp_dim=64, num_heads=2), transformer_dim=32, iou_head_depth=3, iou_head_hidden_dim=32)
    sam = m.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()
    with torch.no_grad():
        for param in sam.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return sam


def test_meta_checkpoint_maps_onto_sammodel_with_identical_outputs(tmp_path):
    m = meta_modeling()
    meta = tiny_meta_sam(m)
    torch.save(meta.state_dict(), tmp_path / "sam_tiny_meta.pth")
    loaded = load_checkpoint(tmp_path / "sam_tiny_meta.pth", tiny_config())
    assert loaded.layout == "meta-sam"
    pixels = torch.randn(2, 3, 1024, 1024)
    with torch.no_grad():
        sparse, dense = meta.prompt_encoder(points=None, boxes=None, masks=None)
        meta_masks = torch.cat([  # Meta's decoder takes one image per prompt batch
            meta.mask_decoder(image_embeddings=meta.image_encoder(pixels[i : i + 1]),
                              image_pe=meta.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                              dense_prompt_embeddings=dense, multimask_output=True)[0]
            for i in range(2)])
        ours = loaded.model(pixel_values=pixels, multimask_output=True).pred_masks[:, 0]
    assert meta_masks.shape == ours.shape == (2, 3, 256, 256)
    assert torch.abs(meta_masks - ours).max() < 1e-4
    assert meta_masks.std() > 1e-2
