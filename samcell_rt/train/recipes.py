"""What an adaptation trains: the recipe names, import-free so the command line lists them without torch.

Where each recipe cuts the model is `finetune.frozen_stages`; why `full` is the default is in
train/finetune.py's docstring (measured).
"""

from enum import StrEnum


class Recipe(StrEnum):
    DECODER = "decoder"  # encoder frozen: only the mask decoder trains
    LATE = "late"  # SAMCell-Lite's last encoder stage, the neck and the decoder train
    FULL = "full"  # every encoder and decoder weight trains


RECIPES = tuple(recipe.value for recipe in Recipe)
# what `adapt` ships instead when training scored worse held out than the starting model with
# thresholds chosen on the annotations (no weight changed)
THRESHOLDS_ONLY = "thresholds"
