"""Training data: loading every `--data` entry, the SAMCell distance-map target, random crops and augmentation.

The target (paper, Methods): for every cell, the Euclidean distance of each of its pixels to the
cell's own border, divided by the largest such distance in that cell, so each cell peaks at 1;
background is 0. Inputs go through the runtime's own preprocessing (`to_uint8`, per-tile CLAHE),
imported, not rewritten, so training sees exactly what inference sees. A `--data` entry is a
folder or COCO file (`annotations`) or `pkg:NAME`, annotated images a registry package ships
(`sources`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..runtime.postprocess import distance_target
from ..runtime.preprocess import enhance_tile
from .annotations import Sample, by_source, load_coco, load_pairs, source_name
from .render import render_appearance
from .sources import PACKAGED_PREFIX, load_packaged


def parse_source_weights(entries: tuple[str, ...] | list[str], data: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`SOURCE=W` entries as {source name: weight}, keyed as the loaded samples name their source
    (`source_name`); each source must be one of the --data entries and W a positive number."""
    sources = {source_name(d) for d in data}
    weights = {}
    for entry in entries:
        source, _, value = entry.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not source or source_name(source) not in sources or not 0 < weight < math.inf:
            raise InputError(f"--source-weight {entry!r}: expected SOURCE=W with SOURCE one of the --data "
                             f"entries ({', '.join(data)}) and W a positive number")
        weights[source_name(source)] = weight
    return weights


def load_dataset(roots: list[str | Path], min_cell_area: int = 0) -> list[Sample]:
    """Load every annotated image under the given folders (or COCO json files)."""
    missing = [str(root) for root in roots if not str(root).startswith(PACKAGED_PREFIX) and not Path(root).exists()]
    if missing:
        raise DataError(f"--data: {', '.join(missing)} does not exist")
    samples: list[Sample] = []
    for root in map(Path, roots):
        if str(root).startswith(PACKAGED_PREFIX):
            samples += load_packaged(str(root)[len(PACKAGED_PREFIX):])
            continue
        found = load_coco(root) if root.suffix == ".json" else load_pairs(root, min_cell_area)
        for sample in found:
            sample.source = source_name(root)
        samples += found
    if not samples:
        raise DataError(f"no annotated images found in {', '.join(map(str, roots))}")
    return samples


@dataclass
class Augment:
    """The paper's augmentations; probabilities and ranges in one place."""

    flip: float = 0.5
    rotate: bool = True
    scale: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (0.95, 1.05)
    invert: float = 0.5
    render: float = 0.0  # share of crops whose image is replaced by an appearance rendered from their labels


def random_crop(sample: Sample, rng: np.random.Generator, tile: int = 256,
                augment: Augment | None = None, focus: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One training pair: a preprocessed uint8 tile (T, T) and its float32 target (T, T).

    With probability `focus` the crop is placed to contain a random cell pixel: sparse images (a
    few bacteria in a large field) would otherwise give mostly empty crops.
    """
    import cv2

    scale = rng.uniform(*augment.scale) if augment else 1.0
    size = max(8, int(round(tile / scale)))
    image, labels = _pad_to(sample.image, size), _pad_to(sample.labels, size)
    y, x = _corner(labels, size, rng, focus)
    image, labels = image[y : y + size, x : x + size], labels[y : y + size, x : x + size]
    if size != tile:
        image = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_LINEAR)
        labels = cv2.resize(labels, (tile, tile), interpolation=cv2.INTER_NEAREST)
    if augment:
        image, labels = _augment(image, labels, rng, augment, sample.look)
    return enhance_tile(np.ascontiguousarray(image)), distance_target(np.ascontiguousarray(labels))


def _corner(labels: np.ndarray, size: int, rng: np.random.Generator, focus: float) -> tuple[int, int]:
    """Top-left corner of a size x size crop: uniform, or (with probability `focus`) around a cell pixel."""
    high_y, high_x = labels.shape[0] - size, labels.shape[1] - size
    cells = np.flatnonzero(labels) if focus and rng.random() < focus else np.empty(0)
    if not cells.size:
        return int(rng.integers(0, high_y + 1)), int(rng.integers(0, high_x + 1))
    cy, cx = divmod(int(cells[rng.integers(cells.size)]), labels.shape[1])
    y = rng.integers(max(0, cy - size + 1), min(cy, high_y) + 1)
    x = rng.integers(max(0, cx - size + 1), min(cx, high_x) + 1)
    return int(y), int(x)


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
    pad_y, pad_x = max(0, size - array.shape[0]), max(0, size - array.shape[1])
    if not (pad_y or pad_x):
        return array
    mode = "symmetric" if array.dtype == np.uint8 else "constant"  # never mirror cells into new ones
    return np.pad(array, ((0, pad_y), (0, pad_x)), mode=mode)


def _augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, augment: Augment, own_look: str = ""):
    import cv2

    if rng.random() < augment.flip:
        image, labels = image[:, ::-1], labels[:, ::-1]
    if augment.rotate:
        angle = rng.uniform(0, 360)
        centre = (image.shape[1] / 2 - 0.5, image.shape[0] / 2 - 0.5)
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        size = (image.shape[1], image.shape[0])
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        labels = cv2.warpAffine(np.ascontiguousarray(labels).astype(np.float32), matrix, size,
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT).astype(np.int32)
    if augment.render and rng.random() < augment.render:  # no draw at 0: earlier recipes replay exactly
        image = render_appearance(labels, rng, own_look=own_look)
    factor = rng.uniform(*augment.brightness)
    image = np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)
    if rng.random() < augment.invert:
        image = 255 - image
    return image, labels


def cell_diameters(samples: list[Sample], augment: Augment | None = None) -> dict | None:
    """The cell sizes a model trained on `samples` has seen: per source the 5th, 50th and 95th
    percentile of equivalent diameters (pixels); `typical` the median of the sources' medians (each
    kind of cell counts once, however many cells it has); `range` the sources' widest 5-95 % span
    stretched by the augmentation's scale range. Exported into the model as its trained range.
    None when no sample has a cell (the model then declares no size)."""
    from ..runtime.scale import equivalent_diameters

    augment = augment or Augment()
    per_source = {}
    for source, group in by_source(samples).items():
        areas = np.concatenate([np.bincount(s.labels.ravel())[1:] for s in group])
        diameters = equivalent_diameters(areas[areas > 0])
        if diameters.size:
            per_source[source] = [round(float(v), 1) for v in np.percentile(diameters, [5, 50, 95])]
    if not per_source:
        return None
    low = min(p[0] for p in per_source.values()) * augment.scale[0]
    high = max(p[2] for p in per_source.values()) * augment.scale[1]
    typical = float(np.median([p[1] for p in per_source.values()]))
    return {"typical": round(typical, 1), "range": [round(low, 1), round(high, 1)], "per_source": per_source}
