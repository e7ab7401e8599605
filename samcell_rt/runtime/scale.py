"""Cell size: estimating it from a result, and rescaling images so cells reach the model at the size it learned.

A distance-map model learns how far a cell's centre lies from its border in pixels; cells much
larger than it saw come out split into pieces, much smaller ones merged or missed. Models declare
the cell diameters they were trained on (`samcell.diameter_px`, the typical one, and
`samcell.diameter_range_px`); the segmenter resizes each image by `typical / diameter` before
tiling and resizes the distance map back, so labels and measurements stay in the image's own
pixels. The estimate is the median equivalent diameter (2 * sqrt(area / pi)) of the cells found,
leaving out cells cut by the image border, whose areas are partial.

An estimate from a first pass at the wrong scale is itself wrong, and wrong in a way that looks
plausible: cells 3x the typical size come out split into pieces of about the typical size, cells a
third of it merged into clumps. `settle_diameter` therefore checks the estimate on one tile's worth
of the image resized three ways: to bring the estimated size to the model's typical size, to half
that and to 1.5 times it. A true size measures the same at all three; pieces and clumps do not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError

SCALE_LIMITS = (1 / 8, 8.0)  # beyond these a resized image has lost or invented too much detail
PROBES = 3  # most candidate sizes `settle_diameter` tries per image (up to three probe tiles each)
FINER = 1.5  # the merge check's scale, relative to the one bringing a candidate to the typical size
AGREE = 1.3  # two diameter estimates within this factor of each other agree


def equivalent_diameters(areas: np.ndarray) -> np.ndarray:
    """Diameters of the discs with these areas (pixels): 2 * sqrt(area / pi)."""
    return 2.0 * np.sqrt(np.asarray(areas, dtype=np.float64) / np.pi)


def estimate_diameter(areas: np.ndarray, touches_border: np.ndarray) -> float | None:
    """Median equivalent diameter (pixels) of the whole cells, or of all cells when every one touches
    the border; None without cells."""
    areas = np.asarray(areas, dtype=np.float64)
    if not areas.size:
        return None
    whole = areas[~np.asarray(touches_border, dtype=bool)]
    chosen = whole if whole.size else areas
    return float(equivalent_diameters(np.median(chosen)))


def agree(first: float, second: float) -> bool:
    """Whether two diameter estimates are the same size within `AGREE`."""
    return max(first, second) <= AGREE * min(first, second)


def settle_diameter(first: float, typical: float, probe: Callable[[float], float | None]) -> float | None:
    """The cell diameter (image pixels) that probes at three scales confirm, starting from `first`.

    `probe(scale)` measures the cells on part of the image resized by `scale`. A candidate size is
    probed where it would reach the model at `typical` (it must measure the same there), at half
    that scale (pieces of split cells keep their size in the model's pixels, so they measure twice
    as large in the image's) and at `FINER` times it (clumps of merged cells come apart into smaller
    cells). A probe that disagrees becomes the next candidate. None when no candidate is confirmed
    within `PROBES` tries or a probe finds no whole cell.
    """
    candidate = first
    for _ in range(PROBES):
        scale = typical / candidate
        for factor in (1.0, 0.5, FINER):
            found = probe(float(np.clip(scale * factor, *SCALE_LIMITS)))
            if found is None:
                return None
            if not agree(found, candidate):
                break
        else:
            return candidate  # the same size at all three scales
        if factor == FINER and found > candidate:
            return candidate  # larger only at the finer scale: no clump came apart, the first two stand
        candidate = found
    return None


def densest_window(foreground: np.ndarray, side: int) -> tuple[slice, slice]:
    """Rows and columns of the `side` x `side` window (clipped to the image) holding the most
    foreground pixels: where a probe sees the most cells."""
    import cv2

    height, width = foreground.shape
    rows, cols = min(side, height), min(side, width)
    total = cv2.integral(foreground.astype(np.uint8))  # (height + 1, width + 1) running sums
    top, left = height + 1 - rows, width + 1 - cols  # windows start at rows 0..top-1, columns 0..left-1
    counts = total[rows:, cols:] - total[:top, cols:] - total[rows:, :left] + total[:top, :left]
    y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return slice(int(y), int(y) + rows), slice(int(x), int(x) + cols)


def scale_for(diameter: float, typical: float) -> float:
    """Resize factor that brings cells of `diameter` pixels to the model's `typical` diameter."""
    if not diameter > 0:
        raise InputError(f"--diameter must be a positive number of pixels, got {diameter}")
    scale = typical / diameter
    low, high = SCALE_LIMITS
    if not low <= scale <= high:
        raise InputError(f"--diameter {diameter:g} px is too far from the model's {typical:g} px: it would resize "
                         f"the image by {scale:.3g}x (limit {low:g}x to {high:g}x)")
    return scale


def resized(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`array` resized to `shape` (rows, columns): area averaging to shrink, bilinear to enlarge."""
    import cv2

    if array.shape == tuple(shape):
        return array
    shrink = shape[0] * shape[1] < array.shape[0] * array.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(array), (shape[1], shape[0]), interpolation=interpolation)


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size of an image of `shape` resized by `scale` (at least one pixel a side)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
