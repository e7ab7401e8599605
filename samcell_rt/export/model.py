"""SAMCell as an export-ready module: uint8 tiles in, distance maps out.

The wrapper folds every model-specific step into the graph, so the runtime only feeds uint8 tiles:
gray -> float -> bilinear resize to the encoder's input size, rounded back to 0..255 after each
of its two passes as the reference processor does (PIL resizes the uint8 image, storing uint8) -> ImageNet mean/std on
three identical channels -> SAM image encoder -> prompt encoder with no prompt -> mask decoder
(first of the three multimask outputs, as the reference reads `pred_masks[:, 0, 0]`) -> sigmoid.
It wraps transformers' `SamModel`; it does not fork it.

Two encoders share everything else: SAM ViT-B (1024 px input, tiles upsampled 4x, ImageNet
normalisation) and SAMCell-Lite's TinyViT from LiteMedSAM (256 px native input, pixels / 255 as
LiteMedSAM was trained). The config's `samcell_encoder` attribute says which; `build_sam` builds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SamConfig, SamModel

from . import CONFIG_NAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# encoder -> (mean, std) of the 0..1 pixel values it was pretrained on
NORMALISATION = {"vit": (IMAGENET_MEAN, IMAGENET_STD), "tinyvit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}


def encoder_kind(config: SamConfig) -> str:
    """`vit` (transformers' own SAM encoder) or `tinyvit` (SAMCell-Lite)."""
    return getattr(config, "samcell_encoder", "vit")


def build_sam(config: SamConfig) -> SamModel:
    """A SamModel for this config, with the TinyViT encoder swapped in for SAMCell-Lite configs."""
    model = SamModel(config)
    if encoder_kind(config) == "tinyvit":
        from .tinyvit import TinyViTEncoder

        model.vision_encoder = TinyViTEncoder()
    return model


class SamCellTiles(nn.Module):
    """(B, 1, T, T) uint8 tiles -> (B, 1, T, T) float32 distance maps in [0, 1]."""

    def __init__(self, sam: SamModel, tile: int = 256) -> None:
        super().__init__()
        self.sam = sam
        self.tile = tile
        self.input_size = sam.config.vision_config.image_size
        mean, std = NORMALISATION[encoder_kind(sam.config)]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def pixel_values(self, tiles: torch.Tensor) -> torch.Tensor:
        """What the reference SamProcessor would hand the model for these tiles."""
        x = tiles.float()
        if self.input_size != self.tile:
            # PIL (and torchvision's uint8 path) resize in two passes, rows first, storing uint8
            # after each pass: reproduce both roundings (half up) to get the same pixel values.
            x = F.interpolate(x, size=(self.tile, self.input_size), mode="bilinear", align_corners=False)
            x = torch.floor(x + 0.5).clamp(0.0, 255.0)
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
            x = torch.floor(x + 0.5).clamp(0.0, 255.0)
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def logits(self, tiles: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, T, T) before the sigmoid: what training losses compare."""
        masks = self.sam(pixel_values=self.pixel_values(tiles), multimask_output=True).pred_masks[:, 0, 0:1]
        return self._tile_sized(masks)

    def embeddings(self, tiles: torch.Tensor) -> torch.Tensor:
        """The image encoder's output for these tiles: what `logits_from_embeddings` decodes."""
        return self.sam.vision_encoder(self.pixel_values(tiles)).last_hidden_state

    def logits_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, T, T) from precomputed image embeddings: the decoder alone, so `adapt`
        can train it on embeddings computed once."""
        masks = self.sam(image_embeddings=embeddings, multimask_output=True).pred_masks[:, 0, 0:1]
        return self._tile_sized(masks)

    def _tile_sized(self, masks: torch.Tensor) -> torch.Tensor:
        if masks.shape[-1] != self.tile:
            masks = F.interpolate(masks, size=(self.tile, self.tile), mode="bilinear", align_corners=False)
        return masks

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(tiles))


def vit_b_config() -> SamConfig:
    """SAM ViT-B (sam-vit-base) configuration, built locally: no hub access needed."""
    return SamConfig()


def tiny_config(image_size: int = 1024) -> SamConfig:
    """A few-layer SAM for tests and smoke runs (same structure, ~0.2 M parameters).

    `image_size=1024` follows ViT-B's pipeline (tiles upsampled 4x); 256 feeds tiles natively
    (16x16 embedding), which makes CPU training tests ~10x cheaper.
    """
    vision = dict(image_size=image_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                  output_channels=32, num_pos_feats=16, global_attn_indexes=[1], window_size=7, initializer_range=0.02)
    decoder = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32)
    prompt = dict(hidden_size=32, image_size=image_size, image_embedding_size=image_size // 16)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder,
                     initializer_range=0.02)


def lite_config() -> SamConfig:
    """SAMCell-Lite: LiteMedSAM's TinyViT encoder (256 px in, 64x64 embedding) + SAM's standard
    prompt encoder and mask decoder. `vision_config` only carries the input size: the ViT that
    SamModel builds from it is replaced by `build_sam`, so it is kept minimal."""
    vision = dict(image_size=256, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, mlp_dim=8,
                  output_channels=256, global_attn_indexes=[0])
    prompt = dict(image_size=256, image_embedding_size=64)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, samcell_encoder="tinyvit")


CONFIGS = dict(zip(CONFIG_NAMES, (vit_b_config, lite_config, tiny_config, lambda: tiny_config(256))))


def config_by_name(name: str) -> SamConfig:
    """`vit-b`, `lite` (SAMCell-Lite), `tiny` (1024 px input) or `tiny-256` (native 256 px input)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    return CONFIGS[name]()


def random_sam(config: SamConfig, seed: int = 0) -> SamModel:
    """A SamModel with seeded random weights whose output varies strongly with the input.

    transformers' own initialisation leaves the decoder output almost constant (std ~1e-5), which
    would make parity tests pass trivially; weights are redrawn with fan-in scaling instead.
    """
    torch.manual_seed(seed)
    model = build_sam(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, param[0].numel() ** -0.5)
    return model
