"""`adapt --recipe full` (the default) and `--recipe late`: the image encoder trains too.

Why: with the encoder frozen, a decoder cannot recover cells whose only cue the encoder never
learned to read (issue 34; measured in train/finetune.py's docstring and
benchmarks/results/adapt_appearance_cpu.json). Training goes through `finetune.finetune`: augmented
crops, the paper's loss, AdamW, within the time given.

Guard rail: the trained model ships only where it scores better than the starting model with
thresholds chosen on the same annotations (the "thresholds" recipe, which costs no training);
otherwise the starting weights ship with those thresholds and the table says why.

Scoring, with `val` images: the final model's thresholds are chosen on the training images and both
candidates are scored on `val`. Without: one fold of the units (`adapt_scores.units`, `folds`) is
held out; a model trains on the others for `cv_share` of the training time, and it and the starting
model segment the held-out units at thresholds chosen on their own maps of the others. Where
training wins, the shipped model trains from the starting weights on every unit for the rest of the
time (k folds, as the decoder recipe runs, would cost it more of its steps), and its thresholds are
chosen on its own maps of the training images (`_final_thresholds`). In-command maps come from torch (no onnxruntime
graph of a model still training exists), about 4x slower per tile than the runtime, so they are
made on centre crops of at most `VIEW_SIDE` pixels; the starting model's maps come from its own
ONNX file through the runtime when it starts from the model's own weights.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from ..registry import resolve_model
from ..runtime.contract import PREPROCESS, ModelInfo
from ..runtime.tiling import tile_grid
from .adapt_job import Job
from .adapt_scores import Verdict, best_thresholds, folds, scores_of, triples, unit_noun, units
from .annotations import Sample
from .budget import export_seconds, torch_tile_seconds
from .finetune import finetune
from .recipes import THRESHOLDS_ONLY

VIEW_SIDE = 704  # 3 x 3 runtime tiles (256 px, stride 224): bounded torch time per scored image
SWEEP_SECONDS = 1.0  # a threshold sweep, per image (development CPU)


class ModelEngine:
    """Runtime engine: the whole torch model, without gradients (maps of a model being trained)."""

    name = "adapt-model"
    max_batch = None
    default_batch = 4
    pipelined = False

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper
        self.info = ModelInfo(Path("adapt"), "adapt", "adapt", wrapper.tile, 0.5, 0.1, "", PREPROCESS)

    def run(self, tiles: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.wrapper(torch.from_numpy(tiles)).numpy().astype(np.float32)


def view(sample: Sample, side: int = VIEW_SIDE) -> Sample:
    """The centre crop of `sample` of at most `side` x `side` pixels (the sample itself when smaller)."""
    h, w = sample.image.shape
    if h <= side and w <= side:
        return sample
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    key = (slice(top, top + side), slice(left, left + side))
    return Sample(sample.name, np.ascontiguousarray(sample.image[key]), np.ascontiguousarray(sample.labels[key]),
                  sample.source)


class WholeRun:
    """One adaptation that trains the encoder (all of it, or its later stages) and the decoder."""

    def __init__(self, job: Job, wrapper, from_parent: bool) -> None:
        self.job, self.settings, self.budget, self.wrapper = job, job.settings, job.budget, wrapper
        self.from_parent = from_parent  # the starting weights are the --model's own: its ONNX maps them
        self.initial = copy.deepcopy(wrapper.state_dict())
        self.units = job.train if job.val else units(job.train)
        self.folds = [] if job.val else folds(len(self.units), self.settings.max_folds,
                                                 np.random.default_rng(self.settings.seed))
        self.tile_seconds = torch_tile_seconds(wrapper)
        self.trainings: dict[str, dict] = {}

    def run(self) -> tuple[Verdict, dict]:
        """Scores of both candidates, the training of the one that ships; leaves its weights in the wrapper."""
        self.budget.tick("scoring the starting model")
        scored = [view(s) for s in self.units + self.job.val]
        before = dict(zip(map(id, scored), self._starting_maps(scored)))
        unit_views, val_views = scored[: len(self.units)], scored[len(self.units):]
        if self.folds:
            return self._held_out(unit_views, [before[id(s)] for s in unit_views])
        return self._on_val(unit_views, val_views, before)

    # -- the two ways of scoring -------------------------------------------------------------------
    def _held_out(self, views: list[Sample], before_maps: list[np.ndarray]) -> tuple[Verdict, dict]:
        """One fold held out (`folds` deals the units; the first fold): a model trains on the other
        units for `cv_share` of the training time, then both candidates segment the held-out units at
        thresholds chosen on their own maps of the other units. Where training wins, the shipped model
        trains from the starting weights on every unit for the rest of the time, in one schedule, as
        the recipe alone does: continuing from the held-out model (a second warm-up and decay after
        a phase on some images only) scored 0.69 OP_CSB on the colony membrane frames where the
        recipe alone scored 0.86 with as many steps (benchmarks/results/adapt_appearance_cpu.json)."""
        parent = self.job.parent
        held = sorted(self.folds[0].tolist())
        inside = [i for i in range(len(self.units)) if i not in held]
        seconds = self._training_seconds(views, passes=2) * self.settings.cv_share
        self._finetune([self.units[i] for i in inside], seconds, "hold-out")
        trained = self._maps(views)
        after = self._held_out_scores(views, trained, held, self._chosen(views, trained, inside))
        kept = self._held_out_scores(views, before_maps, held, self._chosen(views, before_maps, inside))
        before = self._held_out_scores(views, before_maps, held, (parent.peak_threshold, parent.fill_threshold))
        described = (f"{len(held)} of {len(self.units)} {unit_noun(len(self.job.train) == 1)} held out "
                     f"(centre crops of at most {VIEW_SIDE} px)")
        if after.OP_CSB <= kept.OP_CSB:  # a tie keeps the weights as they are
            peak, fill = best_thresholds(triples(views, before_maps), parent)
            return self._keep_starting(Verdict(before, kept, peak, fill, described), after, kept)
        self.wrapper.load_state_dict(self.initial)
        self._finetune(self.units, self._training_seconds(views, passes=1), "training")
        peak, fill = self._final_thresholds(views)
        return Verdict(before, after, peak, fill, described), self._training(
            self.settings.recipe, f"held out, it scored {after.OP_CSB:.3f} OP_CSB against {kept.OP_CSB:.3f} for the "
                                  "starting model with thresholds chosen on your other images; it trained again "
                                  "from the starting weights on every image")

    def _chosen(self, views: list[Sample], maps: list[np.ndarray], inside: list[int]) -> tuple[float, float]:
        return best_thresholds(triples([views[i] for i in inside], [maps[i] for i in inside]), self.job.parent)

    @staticmethod
    def _held_out_scores(views: list[Sample], maps: list[np.ndarray], held: list[int],
                         thresholds: tuple[float, float]):
        return scores_of([views[i] for i in held], [maps[i] for i in held], *thresholds)

    def _on_val(self, train: list[Sample], val: list[Sample], before: dict) -> tuple[Verdict, dict]:
        parent = self.job.parent
        self._finetune(self.units, self._training_seconds(train + val, passes=1), "training")
        peak, fill = self._final_thresholds(train)
        after = scores_of(val, self._maps(val), peak, fill)
        val_before = [before[id(s)] for s in val]
        kept_peak, kept_fill = best_thresholds(triples(train, [before[id(s)] for s in train]), parent)
        kept = scores_of(val, val_before, kept_peak, kept_fill)
        scored = scores_of(val, val_before, parent.peak_threshold, parent.fill_threshold)
        described = f"{len(val)} --val image(s) (centre crops of at most {VIEW_SIDE} px)"
        if after.OP_CSB <= kept.OP_CSB:  # a tie keeps the weights as they are
            return self._keep_starting(Verdict(scored, kept, kept_peak, kept_fill, described), after, kept)
        return Verdict(scored, after, peak, fill, described), self._training(
            self.settings.recipe, f"on --val it scored {after.OP_CSB:.3f} OP_CSB against {kept.OP_CSB:.3f} for the "
                                  "starting model with thresholds chosen on your images")

    def _keep_starting(self, verdict: Verdict, trained, kept) -> tuple[Verdict, dict]:
        """The guard rail: the starting weights ship, with thresholds chosen on the annotations."""
        self.wrapper.load_state_dict(self.initial)
        return verdict, self._training(THRESHOLDS_ONLY, f"the {self.settings.recipe} recipe scored {trained.OP_CSB:.3f} "
                                                     f"OP_CSB held out, not above {kept.OP_CSB:.3f} for the starting model "
                                                     "with thresholds chosen on your images: those ship, unchanged "
                                                     "weights")

    def _final_thresholds(self, train: list[Sample]) -> tuple[float, float]:
        """The shipped model's thresholds, chosen on its own maps of the training images: the fold
        models trained a fraction as long and map differently (on BBBC007 DIC renderings their
        cross-fitted thresholds scored 0.06 OP_CSB on other images, these 0.54)."""
        self.budget.tick("choosing thresholds")
        return best_thresholds(triples(train, self._maps(train)), self.job.parent)

    # -- training, maps and time ---------------------------------------------------------------------
    def _finetune(self, samples: list[Sample], seconds: float, phase: str) -> None:
        self.budget.tick(phase)
        if seconds <= 0:
            self.budget.warn(f"{phase}: the budget leaves no time to train on this machine now; "
                             f"{self.settings.min_steps} steps only")
        report = finetune(self.wrapper, samples, seconds, self.settings, self.job.loaded.sha256, tick=self.budget.tick)
        self.trainings[phase] = report.as_dict()

    def _training(self, recipe: str, why: str) -> dict:
        final = self.trainings.get("training", {})
        return {"recipe": recipe, "why": why, "steps": self.trainings, "crops": final.get("crops", 0)}

    def _starting_maps(self, samples: list[Sample]) -> list[np.ndarray]:
        """The starting model's maps: its own ONNX file through the runtime where the weights are the
        --model's (4-5x faster than torch), else torch."""
        from ..runtime.segmenter import Segmenter

        model = str(resolve_model(self.job.model)) if self.from_parent else ModelEngine(self.wrapper)
        return self.budget.maps(Segmenter(model, diameter="off"), samples)

    def _maps(self, samples: list[Sample]) -> list[np.ndarray]:
        """The model's maps in torch. The pass's seconds per tile replace the estimate the rest of the
        run is planned with: the first torch passes, while the heap grows, are slower than later ones
        (planned from one, a 10-minute run on the colony DIC frames ended 80 s early)."""
        from ..runtime.segmenter import Segmenter

        start = time.monotonic()
        maps = self.budget.maps(Segmenter(ModelEngine(self.wrapper), diameter="off"), samples)
        self.tile_seconds = (time.monotonic() - start) / max(1, self._tiles(samples))
        return maps

    def _tiles(self, samples: list[Sample]) -> int:
        return sum(len(tile_grid(*s.image.shape, tile=self.wrapper.tile)) for s in samples)

    def _training_seconds(self, scored: list[Sample], passes: int) -> float:
        """What is left for training after `passes` torch map passes over `scored`, their threshold
        sweeps and the export."""
        later = passes * (self._tiles(scored) * self.tile_seconds + SWEEP_SECONDS * len(scored)) + self._export_reserve()
        return self.budget.remaining() - later

    def _export_reserve(self) -> float:
        """Export with verification (onnxruntime taken as 4x torch's speed) plus 3 % of the budget."""
        return export_seconds(self.tile_seconds, self.tile_seconds / 4) + 0.03 * self.budget.seconds
