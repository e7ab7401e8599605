"""What `adapt` measures: scores of distance maps against annotations, thresholds chosen on maps,
and the pieces cross-validation holds out.

Why here, apart from the two recipes' runs: the decoder recipe and the whole-model recipes make their
maps differently, but they score, choose thresholds and cross-fit them the same way, so the
before/after table means the same thing whichever recipe ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..evaluate import FILLS, PEAKS, pooled, score_pair, sweep_maps
from ..runtime.contract import ModelInfo
from ..runtime.postprocess import labels_from_distance
from .annotations import Sample

Triple = tuple[str, np.ndarray, np.ndarray]  # (name, distance map, reference labels), as evaluate.sweep_maps reads


@dataclass(frozen=True)
class Scores:
    """Pooled CTC scores of one model on some annotated images (`evaluate.py`), with the cell counts."""

    SEG: float
    DET: float
    OP_CSB: float
    cells: int
    found: int

    @classmethod
    def of(cls, pairs: list) -> Scores:
        """From `evaluate.score_pair` results, pooled over cells."""
        summary = pooled(pairs)
        return cls(*(round(float(summary[key]), 4) for key in ("SEG", "DET", "OP_CSB")),
                   cells=int(summary["n_ref"]), found=int(summary["n_pred"]))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """The before/after table: the model compared against and the adapted one, on the same images."""

    before: Scores
    after: Scores
    peak: float  # the thresholds the adapted model ships with
    fill: float
    scored_on: str


def scores_of(samples: list[Sample], maps: list[np.ndarray], peak: float, fill: float) -> Scores:
    """Scores of the labels these maps give at (`peak`, `fill`) against the samples' annotations."""
    return Scores.of([score_pair(s.labels, labels_from_distance(m, peak, fill), s.name) for s, m in zip(samples, maps)])


def triples(samples: list[Sample], maps: list[np.ndarray]) -> list[Triple]:
    return [(s.name, m, s.labels) for s, m in zip(samples, maps)]


def best_thresholds(candidates: list[Triple], parent: ModelInfo) -> tuple[float, float]:
    """The (peak, fill) scoring best on these maps, over `evaluate`'s grid plus the parent's own pair."""
    peaks = tuple(sorted({*PEAKS, parent.peak_threshold}))
    fills = tuple(sorted({*FILLS, parent.fill_threshold}))
    best = max(sweep_maps(candidates, peaks, fills), key=lambda row: row["OP_CSB"])
    return best["peak"], best["fill"]


def cross_fitted(held_out: list[list[Triple]], parent: ModelInfo) -> tuple[Scores, float, float]:
    """Scores of each fold's held-out maps at the thresholds best on the other folds' maps (so no
    image chooses its own thresholds), and the thresholds best on all held-out maps (what ships)."""
    pairs = []
    for k, fold in enumerate(held_out):
        others = [t for j, folds in enumerate(held_out) if j != k for t in folds]
        peak, fill = best_thresholds(others, parent)
        pairs += [score_pair(ref, labels_from_distance(m, peak, fill), name) for name, m, ref in fold]
    peak, fill = best_thresholds([t for fold in held_out for t in fold], parent)
    return Scores.of(pairs), peak, fill


def units(samples: list[Sample]) -> list[Sample]:
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


def folds(count: int, most: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Unit indices of each fold: `count` units dealt into at most `most` folds in a random order."""
    order = rng.permutation(count)
    k = min(count, most)
    return [order[i::k] for i in range(k)]


def unit_noun(one_image: bool) -> str:
    """What the table calls the units (`units`): a single image's halves, or the images."""
    return "halves of one image" if one_image else "images"


def cv_description(count: int, folds_made: int, one_image: bool) -> str:
    return f"{folds_made}-fold cross-validation over {count} {unit_noun(one_image)}"
