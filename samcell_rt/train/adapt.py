"""`samcell-rt adapt`: from a few annotated images to a verified, registered model within a time budget.

Design (measured on the 2-core development CPU, see benchmarks/adapt.py): the starting model's
image encoder stays frozen and runs once per augmented crop as an onnxruntime graph
(`frozen.FrozenEncoder`); only the mask decoder trains, in torch, on those embeddings with the
project's loss (L2 on the sigmoid output against the SAMCell distance-map target). Crops,
targets and augmentation are `data.random_crop`'s, so adaptation sees what training sees.

The budget (`minutes`) bounds the whole call: data loading, the encoder graph, crop embeddings
(at most `embed_share` of it), training, threshold choice, export and verification. The time the
later stages need is estimated from the measured encoder speed and reserved before training.

Scoring (the before/after table): with `val` images, the starting model (its own thresholds) and the
adapted model (thresholds chosen on the training images) segment the `val` images. Without, by
k-fold cross-validation over the given images (k = number of images, at most 3; a single image is
cut into two halves): each fold's decoder trains on the other images for a share of the training
time (`cv_share`, split over the folds) and segments its held-out images; the thresholds that score a
fold are those best on the other folds' held-out maps, and the shipped thresholds are those best
on all held-out maps. The model that ships trains on every image with the rest of the time, so the
cross-validated "after" score describes a shorter training of the same recipe. Scores are SEG,
DET and OP_CSB of `evaluate.py`, pooled over cells. In-command maps come from the frozen encoder's
ONNX embeddings and each decoder in torch; the exported graph matches them within its verification
tolerance.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..errors import InputError
from ..evaluate import FILLS, PEAKS, pooled, score_pair, sweep_maps
from ..registry import (
    DEFAULT_MODEL,
    adapted_models,
    adapting,
    model_meta,
    register_adapted,
    remove_weights,
    trainable_weights,
)
from ..runtime.atomic import atomic_path, check_output_file, remove_stale_parts, write_text_atomic
from ..runtime.contract import META_KEYS
from ..runtime.postprocess import labels_from_distance
from ..runtime.tiling import tile_grid
from .annotations import Sample, find_pairs
from .data import Augment, cell_diameters, load_dataset, random_crop
from .finetune import CropTraining
from .frozen import DecoderEngine, FrozenEncoder
from .label_checks import check_cell_count, check_label_image, read_raw_labels

SCORES = ("SEG", "DET", "OP_CSB")
# export's cost beyond its torch and onnxruntime passes (tracing, onnxslim, saving): 15-40 s on the
# development CPU, the most under a load average of 16 with a tiny model
EXPORT_FIXED_SECONDS = 30.0
MAX_MINUTES = 7 * 24 * 60  # a budget beyond a week is a typo, not a plan
# a temporary file this old whose writer holds no lock was left by a killed run (the lock alone
# decides on POSIX; the age protects live writers where there are no locks)
STALE_PART_SECONDS = 300.0


@dataclass
class AdaptSettings(CropTraining):
    """Every choice `adapt` makes besides the data and the budget, recorded with the model."""

    embed_share: float = 0.25  # most of the budget spent encoding training crops
    cv_share: float = 0.4  # of the training time, for the cross-validation folds together
    max_folds: int = 3


@dataclass
class AdaptResult:
    """What `adapt` made and measured."""

    out: Path
    name: str
    peak: float
    fill: float
    before: dict
    after: dict
    scored_on: str
    seconds: float
    record: dict


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


class _Clock:
    """The command's budget: elapsed/remaining seconds and one progress bar (ETA = end of budget)."""

    def __init__(self, seconds: float, progress: bool) -> None:
        from tqdm import tqdm

        self.start, self.seconds = time.monotonic(), seconds
        self.bar = tqdm(total=int(math.ceil(seconds)), unit="s", desc="adapt", disable=not progress, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def tick(self, phase: str | None = None) -> None:
        if phase:
            self.bar.set_description(phase)
        self.bar.update(max(0, min(self.bar.total, int(self.elapsed())) - self.bar.n))

    def warn(self, message: str) -> None:
        self.bar.write(f"warning: {message}", file=sys.stderr)

    def close(self) -> None:
        self.bar.n = self.bar.total
        self.bar.set_description("done")
        self.bar.close()


def load_annotations(entries: list[str]) -> list[Sample]:
    """Annotated images from `train --data` entries, every label file of a folder checked first
    (colour, intensity and semantic label images are refused, naming the file)."""
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


def adapt(data: list[str], out: str | Path, model: str = DEFAULT_MODEL, val: list[str] | None = None,
          minutes: float = 10.0, name: str | None = None, overwrite: bool = False, init: str | None = None,
          settings: AdaptSettings | None = None, progress: bool = True) -> AdaptResult:
    """Adapt `model` to the annotated images in `data`; write, verify and register the model at `out`."""
    out, settings = Path(out), settings or AdaptSettings()
    name = name or out.stem
    check_minutes(minutes)
    with adapting(name, out, overwrite):  # the name and the file are this run's until it ends
        check_out(out, overwrite)  # under the claim: no other adapt run can make `out` meanwhile
        for folder, of in ((weights_dir(), ""), (cache_dir() / "adapt", ""), (out.parent, out.name)):
            remove_stale_parts(folder, STALE_PART_SECONDS, of)
        remove_orphan_weights(name)
        clock = _Clock(minutes * 60, progress)
        try:
            return _Run(data, val or [], model, init, settings, clock).finish(out, name, overwrite)
        finally:
            clock.close()


def check_minutes(minutes: float) -> None:
    """InputError unless the budget is a finite number of minutes, more than none and at most a week."""
    if not (isinstance(minutes, (int, float)) and 0 < minutes <= MAX_MINUTES):  # NaN fails every comparison
        raise InputError(f"--minutes {minutes}: give a time budget of more than 0 and at most {MAX_MINUTES} minutes")


def check_out(out: Path, overwrite: bool) -> None:
    """Every refusal the output file can earn, before any work: it exists (without `overwrite`), it is
    no .onnx file, it lies in samcell-rt's own cache, or it cannot be written there."""
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if out.suffix != ".onnx":
        raise InputError(f"{out}: the adapted model is an ONNX file; name it *.onnx")
    if out.resolve().is_relative_to(cache_dir().resolve()):
        raise InputError(f"{out}: inside samcell-rt's own cache ({cache_dir()}); write the adapted model elsewhere")
    check_output_file(out)


def weights_dir() -> Path:
    """Where adapted models' trainable weights are kept (in the cache; `adapt --model NAME` starts from them)."""
    return cache_dir() / "adapt" / "weights"


def remove_orphan_weights(name: str) -> None:
    """Delete the weights a killed earlier run for `name` saved but never registered. Called while
    this run holds `name`, so no live run can own them."""
    registered = {record.get("weights") for record in adapted_models().values()}
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{12}-[0-9a-f]{8}\.safetensors")
    for path in weights_dir().glob("*.safetensors") if weights_dir().is_dir() else ():
        if pattern.fullmatch(path.name) and str(path) not in registered:
            remove_weights(path)


class _Run:
    """One adaptation: the data, the frozen encoder, the crops and the decoders trained on them."""

    def __init__(self, data: list[str], val: list[str], model: str, init: str | None, settings: AdaptSettings,
                 clock: _Clock) -> None:
        from ..export.model import SamCellTiles

        self.settings, self.clock, self.model_name = settings, clock, model
        clock.tick("reading annotations")
        self.train = load_annotations(data)
        self.val = load_annotations(val) if val else []
        check_cell_count(self.train)
        clock.tick("loading model")
        self.parent = model_meta(model)  # the model compared against: thresholds, tile
        self.loaded = starting_model(model, init)
        self.wrapper = SamCellTiles(self.loaded.model, self.parent.tile).eval()
        for param in self.wrapper.parameters():
            param.requires_grad_(False)
        self.initial = copy.deepcopy(self.wrapper.sam.mask_decoder.state_dict())
        self.rng = np.random.default_rng(settings.seed)
        self.steps: dict[str, dict] = {}  # per training: steps, mean loss of its first and last 5 steps
        clock.tick("encoder graph")
        self.encoder = FrozenEncoder(self.wrapper, self.loaded.sha256)
        self.torch_tile_seconds = _torch_tile_seconds(self.wrapper)
        self.units = self.train if self.val else _units(self.train)
        self.folds = [] if self.val else _folds(len(self.units), settings.max_folds, self.rng)

    def finish(self, out: Path, name: str, overwrite: bool) -> AdaptResult:
        """Starting model's maps (every whole-image tile encoded once, timed), crops, training within
        what the later stages leave, scores, export."""
        self.clock.tick("scoring the starting model")
        scored = self.units + self.val
        start = time.perf_counter()
        self.before_maps = dict(zip(map(id, scored), self._maps(self.initial, scored)))
        self.map_seconds = time.perf_counter() - start
        embeddings, targets, unit_of = self._encode_crops()
        self.decode_seconds = _decode_seconds(self.wrapper, embeddings[: self.settings.batch_size])
        everything = np.arange(len(targets))
        if self.clock.remaining() - self._reserve(2, 2) <= 0:
            self.clock.warn(f"the budget leaves no time to train on this machine now (loading, scoring and export "
                            f"need about {(self.clock.elapsed() + self._reserve(2, 2)) / 60:.1f} min): the model gets "
                            f"thresholds chosen on your annotations and {self.settings.min_steps} training steps")
        if self.folds:  # the folds' held-out maps (one pass over the images) and sweeps come first
            fold_seconds = (self.clock.remaining() - self._reserve(1, len(self.folds) + 1)) * self.settings.cv_share
            before, after, peak, fill, scored_on = self._cross_validate(embeddings, targets, unit_of, fold_seconds)
            final = self._train_decoder(embeddings, targets, everything, self.clock.remaining() - self._reserve(0, 0),
                                        "training")
        else:
            final = self._train_decoder(embeddings, targets, everything, self.clock.remaining() - self._reserve(2, 1),
                                        "training")
            before, after, peak, fill, scored_on = self._score_on_val(final)
        return self._export(final, out, name, overwrite, peak, fill, before, after, scored_on)

    # -- crops and time -------------------------------------------------------------------------
    def _encode_crops(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Augmented crops of the units, encoded once: (embeddings fp16, targets, unit of each crop).
        The first batch measures the encoder; the count is what `embed_share` of the budget allows."""
        self.clock.tick("encoding crops")
        augment = Augment(**self.settings.augment)
        limit = self.clock.elapsed() + self.settings.embed_share * self.clock.seconds
        embeddings, targets, unit_of = [], [], []
        self.encode_seconds = 0.0
        while len(targets) < self.settings.max_crops:
            units = [len(targets) + i for i in range(4)]
            crops = [random_crop(self.units[u % len(self.units)], self.rng, self.wrapper.tile, augment,
                                 self.settings.focus) for u in units]
            start = time.perf_counter()
            embeddings.append(torch.from_numpy(self.encoder(np.stack([c[0] for c in crops])[:, None])).half())
            self.encode_seconds = (time.perf_counter() - start) / len(crops)
            targets += [torch.from_numpy(c[1])[None] for c in crops]
            unit_of += [u % len(self.units) for u in units]
            self.clock.tick()
            if len(targets) >= self.settings.min_crops and self.clock.elapsed() + 4 * self.encode_seconds > limit:
                break
        self.crop_count = len(targets)
        return torch.cat(embeddings), torch.stack(targets), np.array(unit_of)

    def _reserve(self, passes: int, sweeps: int) -> float:
        """Seconds the stages after the next training still need, from measured speeds: `passes`
        whole-image map passes over the scored images (their tiles' embeddings are cached: decoder
        passes plus post-processing as measured for the starting model), `sweeps` threshold sweeps
        (about a second per image), and export with verification (torch on 4 tiles plus tracing a
        batch of 2: about 6 torch passes, onnxruntime on 4 tiles, plus the graph simplification).
        Plus 3 % of the budget for what varies on a busy machine."""
        images = self.units + self.val
        tiles = sum(len(tile_grid(*s.image.shape, tile=self.wrapper.tile)) for s in images)
        post = max(0.0, self.map_seconds - tiles * (self.encode_seconds + self.decode_seconds))
        maps = passes * (tiles * self.decode_seconds + post)
        export = 6 * self.torch_tile_seconds + 4 * self.encode_seconds + EXPORT_FIXED_SECONDS
        return maps + sweeps * len(images) + export + 0.03 * self.clock.seconds

    # -- training ------------------------------------------------------------------------------
    def _train_decoder(self, embeddings: torch.Tensor, targets: torch.Tensor, crops: np.ndarray, seconds: float,
                       phase: str) -> dict:
        """The mask decoder trained from the starting weights on `crops` for `seconds` (at least one
        step per crop batch drawn): AdamW, linear warm-up, then linear decay to the end of the time."""
        self.clock.tick(phase)
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
            self.clock.tick()
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
        engine = DecoderEngine(self.encoder, self.wrapper, "adapt", 0.5, 0.1)
        segmenter = Segmenter(engine, diameter="off")
        maps = []
        for sample in samples:
            maps.append(segmenter.segment(sample.image).distance)
            self.clock.tick()
        return maps

    def _grid(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        peak, fill = self._parent_thresholds()
        return tuple(sorted({*PEAKS, peak})), tuple(sorted({*FILLS, fill}))

    def _parent_thresholds(self) -> tuple[float, float]:
        return self.parent.peak_threshold, self.parent.fill_threshold

    def _best(self, triples: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[float, float]:
        rows = sweep_maps(triples, *self._grid())
        best = max(rows, key=lambda row: row["OP_CSB"])
        return best["peak"], best["fill"]

    def _before(self, samples: list[Sample]) -> dict:
        peak, fill = self._parent_thresholds()
        return _scores(samples, [self.before_maps[id(s)] for s in samples], peak, fill)

    def _cross_validate(self, embeddings, targets, unit_of, seconds: float):
        """Fold decoders, their held-out maps, cross-fitted thresholds; the before/after scores."""
        held_out = {}
        for k, fold in enumerate(self.folds):
            crops = np.flatnonzero(~np.isin(unit_of, fold))
            decoder = self._train_decoder(embeddings, targets, crops, seconds / len(self.folds),
                                          f"cross-validation {k + 1}/{len(self.folds)}")
            samples = [self.units[u] for u in fold]
            held_out[k] = [(s.name, m, s.labels) for s, m in zip(samples, self._maps(decoder, samples))]
        scores = []
        for k, fold in enumerate(self.folds):
            others = [t for j, triples in held_out.items() if j != k for t in triples]
            peak, fill = self._best(others)
            scores += [score_pair(ref, labels_from_distance(m, peak, fill), n) for n, m, ref in held_out[k]]
        peak, fill = self._best([t for triples in held_out.values() for t in triples])
        scored_on = (f"{len(self.folds)}-fold cross-validation over {len(self.units)} "
                     f"{'halves of one image' if len(self.train) == 1 else 'images'}")
        return self._before(self.units), _pooled(scores), peak, fill, scored_on

    def _score_on_val(self, final: dict):
        self.clock.tick("choosing thresholds")
        peak, fill = self._best([(s.name, m, s.labels) for s, m in zip(self.train, self._maps(final, self.train))])
        after = _scores(self.val, self._maps(final, self.val), peak, fill)
        return self._before(self.val), after, peak, fill, f"{len(self.val)} --val image(s)"

    # -- result --------------------------------------------------------------------------------
    def _export(self, final: dict, out: Path, name: str, overwrite: bool, peak: float, fill: float, before: dict,
                after: dict, scored_on: str) -> AdaptResult:
        self.clock.tick("exporting and verifying")
        self.wrapper.sam.mask_decoder.load_state_dict(final)
        digest = data_sha256(self.train)
        # one file per run: a failed or killed run never touches the weights a registered model names
        weights = weights_dir() / f"{name}-{digest[:12]}-{uuid.uuid4().hex[:8]}.safetensors"
        try:
            return self._write(weights, digest, out, name, overwrite, peak, fill, before, after, scored_on)
        except BaseException:
            remove_weights(weights)
            raise

    def _write(self, weights: Path, digest: str, out: Path, name: str, overwrite: bool, peak: float, fill: float,
               before: dict, after: dict, scored_on: str) -> AdaptResult:
        """Weights to the cache, the verified ONNX file to `out`, then the registry record."""
        from safetensors.torch import save_file

        from ..export.onnx import ModelProps, export_model

        sizes = cell_diameters(self.train, Augment(**self.settings.augment))
        with atomic_path(weights) as tmp:
            save_file({k: v.detach().clone().contiguous() for k, v in self.wrapper.sam.state_dict().items()}, str(tmp))
        record = {
            "onnx": str(out.resolve()), "weights": str(weights), "parent": self.model_name,
            "parent_sha256": self.loaded.sha256, "data_sha256": digest,
            "data": [s.name for s in self.train], "val": [s.name for s in self.val], "peak": peak, "fill": fill,
            "before": before, "after": after, "scored_on": scored_on, "minutes": self.clock.seconds / 60,
            "steps": self.steps, "crops": self.crop_count, "settings": self.settings.__dict__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_text_atomic(weights.with_suffix(".json"), json.dumps(
            {"sam_config": self.wrapper.sam.config.to_dict(), "data": {"cell_diameter_px": sizes}, "adapt": record},
            indent=2, default=str))
        extra = {META_KEYS["adapted_from"]: self.model_name, META_KEYS["parent_sha256"]: self.loaded.sha256,
                 META_KEYS["training_data_sha256"]: digest,
                 META_KEYS["adapt_scores"]: json.dumps({"before": before, "after": after, "scored_on": scored_on})}
        diameter = (sizes["typical"], tuple(sizes["range"])) if sizes else None
        export_model(weights, out, ModelProps(name=name, version="1", tile=self.wrapper.tile, peak=peak, fill=fill,
                                              diameter=diameter), extra=extra)
        register_adapted(name, record, overwrite)
        return AdaptResult(out, name, peak, fill, before, after, scored_on, self.clock.elapsed(), record)

def _torch_tile_seconds(wrapper) -> float:
    """Seconds of one warm torch forward pass on one tile (what export's verification repeats); the
    first, cold pass is several times slower and would overstate it."""
    tile = torch.zeros((1, 1, wrapper.tile, wrapper.tile), dtype=torch.uint8)
    with torch.no_grad():
        wrapper(tile)
        start = time.perf_counter()
        wrapper(tile)
    return time.perf_counter() - start


def _decode_seconds(wrapper, embeddings: torch.Tensor) -> float:
    """Seconds of one decoder forward pass per tile (what scoring repeats per tile and model)."""
    start = time.perf_counter()
    with torch.no_grad():
        wrapper.logits_from_embeddings(embeddings.float())
    return (time.perf_counter() - start) / len(embeddings)


def _units(samples: list[Sample]) -> list[Sample]:
    """The pieces cross-validation holds out: the images, or a single image's two halves (cut
    across its longer side)."""
    if len(samples) > 1:
        return list(samples)
    (sample,) = samples
    axis = int(sample.image.shape[1] > sample.image.shape[0])
    cut = sample.image.shape[axis] // 2
    halves = []
    for part, index in (("first half", slice(None, cut)), ("second half", slice(cut, None))):
        key = (slice(None), index) if axis else (index, slice(None))
        halves.append(Sample(f"{sample.name} ({part})", np.ascontiguousarray(sample.image[key]),
                             np.ascontiguousarray(sample.labels[key]), sample.source))
    return halves


def _folds(count: int, most: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(count)
    k = min(count, most)
    return [order[i::k] for i in range(k)]


def _scores(samples: list[Sample], maps: list[np.ndarray], peak: float, fill: float) -> dict:
    return _pooled([score_pair(s.labels, labels_from_distance(m, peak, fill), s.name) for s, m in zip(samples, maps)])


def _pooled(scores) -> dict:
    summary = pooled(scores)
    return {**{k: round(float(summary[k]), 4) for k in SCORES}, "cells": int(summary["n_ref"]),
            "found": int(summary["n_pred"])}
