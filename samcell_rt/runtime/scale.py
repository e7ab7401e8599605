"""Cell size: estimating it from a result, and rescaling images so cells reach the model at the size it learned.

A distance-map model learns how far a cell's centre lies from its border in pixels; cells much
larger than it saw come out split into pieces, much smaller ones merged or missed. Models declare
the cell diameters they were trained on (`samcell.diameter_px`, the typical one, and
`samcell.diameter_range_px`); the segmenter resizes each image by `typical / diameter` before
tiling and resizes the distance map back, so labels and measurements stay in the image's own
pixels. The estimate is the median equivalent diameter (2 * sqrt(area / pi)) of the cells found,
leaving out cells cut by the image border, whose areas are partial.

`auto` cannot trust one pass's estimate: cells twice the model's size come out split into pieces
that measure a plausible size, cells a third of it come out merged into plausible clumps. So it
steps towards the size the model learned (the next scale is `typical / estimate`, as long as the
step is worth a pass) and keeps each step only while the distance map grows more confident: a
confident map looks like the map its own cells would have, a cone from every border to a centre
(`map_misfit`). Measured on BBBC007 nuclei resized 4x up and 3x down
(`benchmarks/diameter_auto.py`), the misfit of split or merged results was 1.3-1.8x that at the
true size; near the true size it is flat (a few per cent), so steps smaller than `MIN_STEP` are not
taken and a step must lower the misfit by `MIN_GAIN`.

The steps are bounded in time as well: every tile costs the model the same, so the extra passes
may run at most as many tiles as the first pass did (`AUTO_MIN_TILES` for small images, whose
first pass is one padded tile), which keeps `auto` within twice the one-pass time; a step that
does not fit is not taken, and said. A first pass with fewer than `AUTO_MIN_CELLS` whole cells
measures nothing: `auto` then keeps it and says it cannot tell (a demo frame shrunk 4x, 9 px
cells, comes out as one 45 px clump, which "stepped" to 0.73x and made things worse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import DIAMETER_MODES

SCALE_LIMITS = (1 / 8, 8.0)  # beyond these a resized image has lost or invented too much detail
MIN_STEP = 1.25  # `auto` takes no step smaller than this factor: the misfit cannot tell such scales apart
MIN_GAIN = 0.97  # a step is kept only when it lowers the misfit to this share of the last kept one, or less
AUTO_PASSES = 4  # at most this many passes per image under `auto` (the first, then up to three steps)
AUTO_MIN_TILES = 16  # the extra passes' tile budget is the first pass's tiles, or this many for small images
AUTO_MIN_CELLS = 5  # fewer cells in the first pass give no size to step towards


@dataclass(frozen=True)
class Diameter:
    """What --diameter and `Segmenter(diameter=...)` ask for, checked once where it comes in: the cells'
    diameter in pixels, `auto` or `off` (never rescale). `value` is the form run records store."""

    value: float | str = "auto"

    def __post_init__(self) -> None:
        if self.value in DIAMETER_MODES:
            return
        try:
            number = float(self.value)
        except (TypeError, ValueError):
            raise InputError(f"{self.value!r} is not a number of pixels, 'auto' or 'off'") from None
        if not number > 0:
            raise InputError(f"{self.value} must be a positive number of pixels")
        if isinstance(self.value, str):  # a number stays as given, so run records show it as before
            object.__setattr__(self, "value", number)

    @classmethod
    def parse(cls, value: Diameter | float | str) -> Diameter:
        """`value` as a Diameter: a number (or its text), `auto` or `off`; InputError for anything else."""
        return value if isinstance(value, Diameter) else cls(value)

    @property
    def auto(self) -> bool:
        """Segment as is, then step towards the model's size while the map grows more confident."""
        return self.value == "auto"

    @property
    def pixels(self) -> float | None:
        """The cells' diameter asked for, or None under `auto` and `off`."""
        return None if isinstance(self.value, str) else self.value


def equivalent_diameters(areas: np.ndarray) -> np.ndarray:
    """Diameters of the discs with these areas (pixels): 2 * sqrt(area / pi)."""
    return 2.0 * np.sqrt(np.asarray(areas, dtype=np.float64) / np.pi)


def estimate_basis(touches_border: np.ndarray) -> int:
    """How many cells `estimate_diameter` rests on: the whole ones, or all when every one touches the border."""
    touches = np.asarray(touches_border, dtype=bool)
    return int(np.count_nonzero(~touches)) or touches.size


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
    """Resize factor that brings cells of `diameter` pixels (positive: a `Diameter`'s) to the model's `typical` diameter."""
    scale = typical / diameter
    low, high = SCALE_LIMITS
    if not low <= scale <= high:
        raise InputError(f"--diameter {diameter:g} px is too far from the model's {typical:g} px: it would resize "
                         f"the image by {scale:.3g}x (limit {low:g}x to {high:g}x)")
    return scale


def next_scale(diameter: float | None, scale: float, typical: float, largest: float = SCALE_LIMITS[1]) -> float | None:
    """The scale `auto` tries after a pass at `scale` that measured cells of `diameter` image pixels:
    the one bringing them to the model's `typical` size (within the limits, and at most `largest`,
    the pixel budget's), or None when there are no cells or the step would be under `MIN_STEP`."""
    if not diameter:
        return None
    target = float(np.clip(typical / diameter, SCALE_LIMITS[0], min(SCALE_LIMITS[1], largest)))
    return None if max(target / scale, scale / target) < MIN_STEP else target


def map_misfit(distance: np.ndarray, labels: np.ndarray, fill: float) -> float:
    """Mean absolute difference between the distance map and the map its own labels would have
    (`distance_target`), over the pixels either marks as cell: low when every found cell is one clean
    cone, high where the model hedged (cells split into pieces, merged clumps, low flat peaks)."""
    from .postprocess import distance_target

    region = (distance > fill) | (labels > 0)
    if not region.any():
        return float("inf")
    return float(np.abs(distance[region] - distance_target(labels)[region]).mean())


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
