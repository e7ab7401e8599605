"""`adapt --recipe decoder`: the image encoder frozen, only the mask decoder trains.

Design (measured on the 2-core development CPU, see benchmarks/adapt.py): the starting model's
image encoder runs once per augmented crop as an onnxruntime graph (`frozen.FrozenEncoder`); the
mask decoder trains in torch on those embeddings with the paper's loss (L2 on the sigmoid output
against the distance-map target). Cheap per step (a few hundred steps in 10 minutes), but the
decoder cannot learn what the frozen encoder does not see: on appearances unlike the training data
it gains little (issue 34; the whole-model recipes in `adapt_whole.py` are the default).

Scoring: with `val` images, the starting model (its own thresholds) and the adapted decoder
(thresholds chosen on the training images) segment the `val` images. Without, by k-fold
cross-validation over the given images (`adapt_scores.units`, `folds`): each fold's decoder trains
on the other images for a share of the training time (`cv_share`, split over the folds) and segments
its held-out images; thresholds are cross-fitted (`adapt_scores.cross_fitted`). The decoder that ships
trains on every image with the rest of the time.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..runtime.tiling import tile_grid
from .adapt_job import Job
from .adapt_scores import (
    Verdict,
    best_thresholds,
    cross_fitted,
    cv_description,
    folds,
    scores_of,
    triples,
    units,
)
from .annotations import Sample
from .budget import export_seconds, torch_tile_seconds
from .data import Augment, random_crop
from .frozen import DecoderEngine, FrozenEncoder
from .recipes import Recipe


class DecoderRun:
    """One decoder-only adaptation: the frozen encoder, the crops and the decoders trained on them."""

    def __init__(self, job: Job, wrapper) -> None:
        self.job, self.settings, self.budget, self.wrapper = job, job.settings, job.budget, wrapper
        self.initial = copy.deepcopy(wrapper.sam.mask_decoder.state_dict())
        self.rng = np.random.default_rng(self.settings.seed)
        self.steps: dict[str, dict] = {}  # per training: steps, mean loss of its first and last 5 steps
        self.budget.tick("encoder graph")
        self.encoder = FrozenEncoder(wrapper, job.loaded.sha256)
        self.torch_tile_seconds = torch_tile_seconds(wrapper)
        self.units = job.train if job.val else units(job.train)
        self.folds = [] if job.val else folds(len(self.units), self.settings.max_folds, self.rng)
        self.crop_count, self.map_seconds, self.encode_seconds, self.decode_seconds = 0, 0.0, 0.0, 0.0
        self.before_maps: dict[int, np.ndarray] = {}  # the starting model's map of each scored image, by id

    def run(self) -> tuple[Verdict, dict]:
        """Starting model's maps (every whole-image tile encoded once, timed), crops, training within
        what the later stages leave, scores. Leaves the shipped decoder in the wrapper."""
        self.budget.tick("scoring the starting model")
        scored = self.units + self.job.val
        start = time.perf_counter()
        self.before_maps.update(zip(map(id, scored), self._maps(self.initial, scored)))
        self.map_seconds = time.perf_counter() - start
        embeddings, targets, unit_of = self._encode_crops()
        self.decode_seconds = _decode_seconds(self.wrapper, embeddings[: self.settings.batch_size])
        everything = np.arange(len(targets))
        if self.budget.remaining() - self._reserve(2, 2) <= 0:
            self.budget.warn(f"the budget leaves no time to train on this machine now (loading, scoring and export "
                             f"need about {(self.budget.elapsed() + self._reserve(2, 2)) / 60:.1f} min): the model "
                             f"gets thresholds chosen on your annotations and {self.settings.min_steps} training steps")
        if self.folds:  # the folds' held-out maps (one pass over the images) and sweeps come first
            fold_seconds = (self.budget.remaining() - self._reserve(1, len(self.folds) + 1)) * self.settings.cv_share
            verdict = self._cross_validate(embeddings, targets, unit_of, fold_seconds)
            final = self._train(embeddings, targets, everything, self.budget.remaining() - self._reserve(0, 0),
                                "training")
        else:
            final = self._train(embeddings, targets, everything, self.budget.remaining() - self._reserve(2, 1),
                                "training")
            verdict = self._score_on_val(final)
        self.wrapper.sam.mask_decoder.load_state_dict(final)
        return verdict, {"recipe": Recipe.DECODER.value, "why": "asked for (--recipe decoder)", "crops": self.crop_count,
                         "steps": self.steps}

    # -- crops and time -------------------------------------------------------------------------
    def _encode_crops(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Augmented crops of the units, encoded once: (embeddings fp16, targets, unit of each crop).
        The first batch measures the encoder; the count is what `embed_share` of the budget allows."""
        self.budget.tick("encoding crops")
        augment = Augment(**self.settings.augment)
        limit = self.budget.elapsed() + self.settings.embed_share * self.budget.seconds
        embeddings, targets, unit_of = [], [], []
        while len(targets) < self.settings.max_crops:
            picked = [len(targets) + i for i in range(4)]
            crops = [random_crop(self.units[u % len(self.units)], self.rng, self.wrapper.tile, augment,
                                 self.settings.focus) for u in picked]
            start = time.perf_counter()
            embeddings.append(torch.from_numpy(self.encoder(np.stack([c[0] for c in crops])[:, None])).half())
            self.encode_seconds = (time.perf_counter() - start) / len(crops)
            targets += [torch.from_numpy(c[1])[None] for c in crops]
            unit_of += [u % len(self.units) for u in picked]
            self.budget.tick()
            if len(targets) >= self.settings.min_crops and self.budget.elapsed() + 4 * self.encode_seconds > limit:
                break
        self.crop_count = len(targets)
        return torch.cat(embeddings), torch.stack(targets), np.array(unit_of)

    def _reserve(self, passes: int, sweeps: int) -> float:
        """Seconds the stages after the next training still need, from measured speeds: `passes`
        whole-image map passes over the scored images (their tiles' embeddings are cached: decoder
        passes plus post-processing as measured for the starting model), `sweeps` threshold sweeps
        (about a second per image), and export with verification (`export_seconds`). Plus 3 % of the
        budget for what varies on a busy machine."""
        images = self.units + self.job.val
        tiles = sum(len(tile_grid(*s.image.shape, tile=self.wrapper.tile)) for s in images)
        post = max(0.0, self.map_seconds - tiles * (self.encode_seconds + self.decode_seconds))
        maps = passes * (tiles * self.decode_seconds + post)
        export = export_seconds(self.torch_tile_seconds, self.encode_seconds)
        return maps + sweeps * len(images) + export + 0.03 * self.budget.seconds

    # -- training ------------------------------------------------------------------------------
    def _train(self, embeddings: torch.Tensor, targets: torch.Tensor, crops: np.ndarray, seconds: float,
               phase: str) -> dict:
        """The mask decoder trained from the starting weights on `crops` for `seconds` (at least
        `min_steps` steps): AdamW, linear warm-up, then linear decay to the end of the time."""
        self.budget.tick(phase)
        decoder = self.wrapper.sam.mask_decoder
        decoder.load_state_dict(self.initial)
        params = list(decoder.parameters())
        for param in params:
            param.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=self.settings.lr, weight_decay=self.settings.weight_decay)
        start, step, size, losses = time.monotonic(), 0, min(self.settings.batch_size, len(crops)), []
        while step < self.settings.min_steps or time.monotonic() - start < seconds:
            progress = max((time.monotonic() - start) / max(seconds, 1e-6), step / max(self.settings.min_steps, 1))
            for group in optimizer.param_groups:
                group["lr"] = self.settings.lr * min(1.0, (step + 1) / self.settings.warmup_steps) * max(0.02, 1 - progress)
            batch = torch.from_numpy(self.rng.choice(crops, size, replace=False))
            logits = self.wrapper.logits_from_embeddings(embeddings[batch].float())
            loss = torch.mean((torch.sigmoid(logits) - targets[batch]) ** 2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            self.budget.tick()
        for param in params:
            param.requires_grad_(False)
        self.steps[phase] = {"steps": step, "first_loss": round(float(np.mean(losses[:5])), 5),
                             "last_loss": round(float(np.mean(losses[-5:])), 5)}
        return copy.deepcopy(decoder.state_dict())

    # -- scoring -------------------------------------------------------------------------------
    def _maps(self, decoder: dict, samples: list[Sample]) -> list[np.ndarray]:
        """Whole-image distance maps with this decoder, through the runtime's tiling and blending."""
        from ..runtime.segmenter import Segmenter

        self.wrapper.sam.mask_decoder.load_state_dict(decoder)
        return self.budget.maps(Segmenter(DecoderEngine(self.encoder, self.wrapper, "adapt", 0.5, 0.1),
                                          diameter="off"), samples)

    def _before(self, samples: list[Sample]):
        parent = self.job.parent
        return scores_of(samples, [self.before_maps[id(s)] for s in samples], parent.peak_threshold,
                         parent.fill_threshold)

    def _cross_validate(self, embeddings, targets, unit_of, seconds: float) -> Verdict:
        """Fold decoders, their held-out maps, cross-fitted thresholds; the before/after scores."""
        held_out = []
        for k, fold in enumerate(self.folds):
            crops = np.flatnonzero(~np.isin(unit_of, fold))
            decoder = self._train(embeddings, targets, crops, seconds / len(self.folds),
                                  f"cross-validation {k + 1}/{len(self.folds)}")
            samples = [self.units[u] for u in fold]
            held_out.append(triples(samples, self._maps(decoder, samples)))
        after, peak, fill = cross_fitted(held_out, self.job.parent)
        described = cv_description(len(self.units), len(self.folds), len(self.job.train) == 1)
        return Verdict(self._before(self.units), after, peak, fill, described)

    def _score_on_val(self, final: dict) -> Verdict:
        self.budget.tick("choosing thresholds")
        train, val = self.job.train, self.job.val
        peak, fill = best_thresholds(triples(train, self._maps(final, train)), self.job.parent)
        after = scores_of(val, self._maps(final, val), peak, fill)
        return Verdict(self._before(val), after, peak, fill, f"{len(val)} --val image(s)")


def _decode_seconds(wrapper, embeddings: torch.Tensor) -> float:
    """Seconds of one decoder forward pass per tile (what scoring repeats per tile and model)."""
    start = time.perf_counter()
    with torch.no_grad():
        wrapper.logits_from_embeddings(embeddings.float())
    return (time.perf_counter() - start) / len(embeddings)
