"""Adaptation recipes that train the image encoder too: where the frozen boundary sits.

Why: with the whole encoder frozen (`adapt`'s decoder-only recipe) the decoder cannot recover cells
whose only cue the encoder never learned to read (issue 34: membrane-stained cells 0.44 -> 0.50
decoder-only, 0.76 with the whole model fine-tuned). Training the encoder costs CPU time: on the
2-core development CPU (load 7) torch eager ran the SAMCell-Lite encoder forward at about 10 s per
tile, onnxruntime at about 2 s, and the patch embedding and first two stages (the 128 px and 64 px
convolution and attention stages) were 3/4 of torch's forward time. So each recipe cuts the model
at a stage boundary:

- `decoder`: the encoder and its neck frozen (today's `adapt`);
- `late`: the patch embedding and the first three TinyViT stages frozen; the last stage, the neck
  and the mask decoder train;
- `full`: every encoder and decoder weight trains (the paper's recipe; the prompt encoder, unused
  without prompts, stays frozen).

A frozen part runs as an onnxruntime graph (exported once per starting model and cut, kept in the
user cache), once per augmented crop; its features are kept (fp16) and the trainable part revisits
them for the rest of the time. `full` has nothing frozen to cache, so every step draws fresh
augmented crops. Loss: the paper's, L2 between the sigmoid output and the distance-map target.
AdamW, linear warm-up, then linear decay to the end of the time. The whole model stays in eval
mode: batch-norm statistics (TinyViT's convolution stages) are not re-estimated from a few
correlated crops, and no stochastic depth is drawn. bf16 autocast only where the CPU multiplies
bf16 natively (`runtime.cpu.native_bf16`): emulated bf16 is slower than fp32.

Measured (benchmarks/adapt_appearance.py, BBBC007 DIC renderings, 2 images in, 4 scored, 10-minute
budget on the shared 2-core CPU, load 4-13): default 0.000 OP_CSB; `decoder` 0.068 (15 steps);
`late` 0.151 (10 steps, 52 crops); `full` 0.548 (8 steps, 32 crops). Few steps of the whole
model beat many of its later parts: `full` is the default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..errors import InputError
from ..runtime.cpu import native_bf16
from .annotations import Sample
from .data import Augment, random_crop
from .frozen import ENCODER_BATCH, FrozenEncoder
from .memory import keep_freed_memory
from .recipes import RECIPES, Recipe

LATE_FROZEN_STAGES = 3  # TinyViT stages frozen by `late`: the 4th (last) stage, neck and decoder train


@dataclass
class CropTraining:
    """The optimiser and crop choices that `adapt` and every fine-tuning recipe share."""

    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 10
    batch_size: int = 4
    part: int = 2  # crops whose activations are held at once: the gradients of a batch add up over its parts
    max_crops: int = 160
    min_crops: int = 8
    focus: float = 0.5  # share of crops centred on a cell
    min_steps: int = 2  # training steps even when the budget leaves no time (tests fix the work this way)
    seed: int = 0
    augment: dict = field(default_factory=lambda: asdict(Augment()))


@dataclass
class FinetuneSettings(CropTraining):
    """Every choice of one fine-tuning besides the data and the time, recorded with the model."""

    recipe: str = Recipe.FULL  # measured best at 10 minutes on BBBC007 DIC renderings (see the module docstring)
    feature_share: float = 0.35  # most of the time spent computing frozen features of crops


def frozen_stages(wrapper, recipe: str) -> int | None:
    """How many encoder stages `recipe` freezes: None for the whole encoder with its neck (`decoder`),
    0 for none (`full`). `late` needs an encoder made of stages (TinyViT's `layers`)."""
    if recipe not in RECIPES:
        raise InputError(f"unknown adapt recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if recipe == Recipe.DECODER:
        return None
    if recipe == Recipe.FULL:
        return 0
    encoder = wrapper.sam.vision_encoder
    if not hasattr(encoder, "neck") or len(getattr(encoder, "layers", ())) <= LATE_FROZEN_STAGES:
        raise InputError(f"recipe 'late' needs an encoder of more than {LATE_FROZEN_STAGES} stages (SAMCell-Lite's "
                         f"TinyViT); this model's is {type(encoder).__name__}: use 'decoder' or 'full'")
    return LATE_FROZEN_STAGES


def head_logits(wrapper, stages: int | None, features: torch.Tensor) -> torch.Tensor:
    """Mask logits from the frozen part's output (`frozen.FrozenPart`); with nothing frozen, from uint8 tiles."""
    if stages is None:
        return wrapper.logits_from_embeddings(features)
    if stages == 0:
        return wrapper.logits(features)
    encoder = wrapper.sam.vision_encoder
    x = features
    for stage in encoder.layers[stages:]:
        x = stage(x)
    return wrapper.logits_from_embeddings(encoder.neck(x))


def trainable_parameters(wrapper, stages: int | None) -> list[torch.nn.Parameter]:
    """What a recipe trains: the mask decoder, plus the encoder after its frozen stages (all of it
    for `full`). The prompt encoder never trains."""
    sam = wrapper.sam
    if stages is None:
        return list(sam.mask_decoder.parameters())
    if stages == 0:
        return [*sam.vision_encoder.parameters(), *sam.mask_decoder.parameters()]
    encoder = sam.vision_encoder
    return [*encoder.layers[stages:].parameters(), *encoder.neck.parameters(), *sam.mask_decoder.parameters()]


@dataclass
class FinetuneReport:
    """What the time bought: the figures `adapt`'s table shows."""

    recipe: str
    steps: int
    crops: int
    seconds: float
    first_loss: float
    last_loss: float
    trainable: int
    bf16: bool

    def as_dict(self) -> dict:
        return asdict(self)


def finetune(wrapper, samples: list[Sample], seconds: float, settings: FinetuneSettings, weights_sha256: str,
             tick: Callable[[], None] | None = None) -> FinetuneReport:
    """Train `wrapper` (a `SamCellTiles`) in place on augmented crops of `samples` for about `seconds`
    with `settings.recipe`; at least `min_steps` steps whatever the time."""
    tick = tick or (lambda: None)
    keep_freed_memory()
    start = time.monotonic()
    stages = frozen_stages(wrapper, settings.recipe)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    wrapper.eval()
    for param in wrapper.parameters():
        param.requires_grad_(False)
    params = trainable_parameters(wrapper, stages)
    if stages == 0:
        draw = _FreshCrops(samples, rng, wrapper.tile, settings)
    else:
        draw = _CachedCrops(samples, rng, wrapper.tile, settings, FrozenEncoder(wrapper, weights_sha256, stages=stages),
                            start + settings.feature_share * seconds, tick)
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    bf16 = native_bf16()
    train_start, train_seconds = time.monotonic(), max(0.0, seconds - (time.monotonic() - start))
    step, losses, warmup = 0, [], settings.warmup_steps
    while step < settings.min_steps or time.monotonic() - train_start < train_seconds:
        done = max((time.monotonic() - train_start) / max(train_seconds, 1e-6), step / max(settings.min_steps, 1))
        if step == 1:  # the first step's time says how many the budget buys: warm up over a tenth of them
            warmup = warmup_steps(settings.warmup_steps, train_seconds, time.monotonic() - train_start)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / warmup) * max(0.02, 1 - done)
        optimizer.zero_grad(set_to_none=True)
        losses.append(batch_gradients(wrapper, stages, *draw(settings.batch_size), settings.part, bf16))
        optimizer.step()
        step += 1
        tick()
    for param in params:
        param.requires_grad_(False)
    return FinetuneReport(settings.recipe, step, draw.count, round(time.monotonic() - start, 1),
                          round(float(np.mean(losses[:5])), 5), round(float(np.mean(losses[-5:])), 5),
                          sum(p.numel() for p in params), bf16)


def batch_gradients(wrapper, stages: int | None, features: torch.Tensor, targets: torch.Tensor, part: int,
                    bf16: bool) -> float:
    """The batch's loss (the paper's: mean squared error of the sigmoid output), its gradients added to
    the parameters' `.grad`, computed `part` crops at a time. The sum is the one-pass gradient (the
    model stays in eval mode, so no crop sees another's statistics) while only `part` crops'
    activations are held: a whole-model step on 4 SAMCell-Lite crops holds gigabytes of them."""
    total, part = 0.0, max(1, part)
    for start in range(0, len(targets), part):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = head_logits(wrapper, stages, features[start : start + part])
        loss = torch.sum((torch.sigmoid(logits.float()) - targets[start : start + part]) ** 2) / targets.numel()
        loss.backward()
        total += loss.item()
    return total


def warmup_steps(most: int, seconds: float, step_seconds: float) -> int:
    """Warm-up steps: a tenth of the steps `seconds` buys at `step_seconds` each, 1 to `most`. On the
    2-core development CPU a whole-model step takes 11-25 s (25-60 s under load before
    `memory.keep_freed_memory`), so a 10-minute budget buys 20-40 steps; a fixed warm-up of 10 steps
    would spend a large share of them at a fraction of the learning rate."""
    return max(1, min(most, int(seconds / max(step_seconds, 1e-6)) // 10))


class _FreshCrops:
    """New augmented crops for every step (nothing frozen to cache)."""

    def __init__(self, samples: list[Sample], rng: np.random.Generator, tile: int, settings: FinetuneSettings) -> None:
        self.samples, self.rng, self.tile, self.settings = samples, rng, tile, settings
        self.augment, self.count = Augment(**settings.augment), 0

    def __call__(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [random_crop(self.samples[(self.count + i) % len(self.samples)], self.rng, self.tile, self.augment,
                             self.settings.focus) for i in range(size)]
        self.count += size
        return (torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]),
                torch.from_numpy(np.stack([p[1] for p in pairs])[:, None]))


class _CachedCrops:
    """Augmented crops whose frozen features are computed once, until `deadline` or `max_crops`
    (at least `min_crops`); steps then draw batches of them without replacement."""

    def __init__(self, samples: list[Sample], rng: np.random.Generator, tile: int, settings: FinetuneSettings,
                 prefix: FrozenEncoder, deadline: float, tick: Callable[[], None]) -> None:
        augment, features, targets = Augment(**settings.augment), [], []
        while len(targets) < settings.max_crops:
            crops = [random_crop(samples[(len(targets) + i) % len(samples)], rng, tile, augment, settings.focus)
                     for i in range(ENCODER_BATCH)]
            begun = time.monotonic()
            features.append(torch.from_numpy(prefix(np.stack([c[0] for c in crops])[:, None])).half())
            targets += [torch.from_numpy(c[1])[None] for c in crops]
            tick()
            if len(targets) >= settings.min_crops and time.monotonic() + (time.monotonic() - begun) > deadline:
                break
        self.features, self.targets, self.rng = torch.cat(features), torch.stack(targets), rng
        self.count = len(targets)

    def __call__(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.from_numpy(self.rng.choice(self.count, min(size, self.count), replace=False))
        return self.features[batch].float(), self.targets[batch]

