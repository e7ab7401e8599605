"""Cell size: estimating it from a result, and rescaling images so cells reach the model at the size it learned.

A distance-map model learns how far a cell's centre lies from its border in pixels; cells much
larger than it saw come out split into pieces, much smaller ones merged or missed. Models declare
the cell diameters they were trained on (`samcell.diameter_px`, the typical one, and
`samcell.diameter_range_px`); the segmenter resizes each image by `typical / diameter` before
tiling and resizes the distance map back, so labels and measurements stay in the image's own
pixels. The estimate is the median equivalent diameter (2 * sqrt(area / pi)) of the cells found,
leaving out cells cut by the image border, whose areas are partial.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

SCALE_LIMITS = (1 / 8, 8.0)  # beyond these a resized image has lost or invented too much detail


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
