"""What one `adapt` run works on: its settings, the annotated images, the model it is compared
against and the weights it starts from.

Why apart from the recipes: both runs (`adapt_decoder.py`, `adapt_whole.py`) read the same inputs,
and reading them (label checks, the parent's thresholds without opening an engine, sha256-checked
weights) is the part every recipe must get the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..registry import model_meta, trainable_weights
from ..runtime.contract import ModelInfo
from .annotations import Sample, find_pairs
from .budget import Budget
from .finetune import FinetuneSettings
from .label_checks import check_cell_count, check_label_image, read_raw_labels


@dataclass
class AdaptSettings(FinetuneSettings):
    """Every choice `adapt` makes besides the data and the budget, recorded with the model. `recipe`
    (from `FinetuneSettings`): what trains; `full` unless asked (see train/finetune.py)."""

    embed_share: float = 0.25  # decoder recipe: most of the budget spent encoding training crops
    cv_share: float = 0.3  # of the training time: the held-out check (full, late) or the folds together (decoder)
    max_folds: int = 3


@dataclass
class Job:
    """One adaptation's inputs, read once."""

    train: list[Sample]
    val: list[Sample]
    model: str  # the --model compared against
    parent: ModelInfo  # its metadata: thresholds, tile
    loaded: object  # export.checkpoints.LoadedCheckpoint: the starting weights
    settings: AdaptSettings
    budget: Budget

    @classmethod
    def read(cls, data: list[str], val: list[str], model: str, init: str | None, settings: AdaptSettings,
             budget: Budget) -> Job:
        budget.tick("reading annotations")
        train = load_annotations(data)
        held = load_annotations(val) if val else []
        check_cell_count(train)
        budget.tick("loading model")
        return cls(train, held, model, model_meta(model), starting_model(model, init), settings, budget)

    def wrapper(self):
        """The starting model as an export-ready torch module, every weight frozen (eval mode)."""
        from ..export.model import SamCellTiles

        wrapper = SamCellTiles(self.loaded.model, self.parent.tile).eval()
        for param in wrapper.parameters():
            param.requires_grad_(False)
        return wrapper


def starting_model(name: str, init: str | None = None):
    """The weights adaptation starts from: `init` (a checkpoint, or `litemedsam`) when given, else
    the trainable weights of the model `name` (`registry.trainable_weights`: a shipped model's own
    weights, sha256-checked, an adapted model's saved weights or a downloaded checkpoint). Returns a
    `LoadedCheckpoint`."""
    from ..export.checkpoints import load_checkpoint
    from ..export.model import lite_config

    if init:
        return load_checkpoint(init, lite_config())
    return load_checkpoint(trainable_weights(name))


def load_annotations(entries: list[str]) -> list[Sample]:
    """Annotated images from `train --data` entries, every label file of a folder checked first
    (colour, intensity and semantic label images are refused, naming the file)."""
    from .data import load_dataset

    for entry in entries:
        if Path(entry).is_dir():
            for _, label_path in find_pairs(entry):
                check_label_image(read_raw_labels(label_path), label_path)
    return load_dataset(list(entries))  # names missing entries; its errors are the family's


def data_sha256(samples: list[Sample]) -> str:
    """One hash of the training images and labels, independent of their order and file names."""
    parts = sorted(hashlib.sha256(s.image.tobytes() + s.labels.astype(np.int32).tobytes()).hexdigest()
                   for s in samples)
    return hashlib.sha256("".join(parts).encode()).hexdigest()
