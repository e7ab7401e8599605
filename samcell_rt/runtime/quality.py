"""Per-image quality flags, read from the distance map already computed: when not to trust a result.

A segmentation can look like a clean answer and still be wrong: a map that never reaches the peak
threshold gives "0 cells" (a model that does not recognise these cells, or cells far from its
trained size), a count that swings under a small change of the peak threshold means the map's
peaks sit right at it, cells that mostly touch the image border are larger than the field, cells
that no single tile holds whole were only seen in pieces, cells far outside the sizes the model
was trained on are the main cause of all of these, and a map whose cell area mostly lies outside
every cell found (faint bodies that never reach the peak: an appearance the model does not know, such
as DIC or a membrane stain on a model trained on filled cells) means most cells were missed. So does
an image whose structure lies mostly outside the cells found: where the model does not read an
appearance at all (a membrane-stained tissue, every cell only a closed outline), the map stays empty
there and only the image itself shows the cells.
Each flag says what was seen and what to try. Counts at nearby thresholds use the peak regions'
connected components, which is what the marker rule seeds, so the check costs two labelling
passes, not two watersheds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PEAK_DELTA = 0.05  # thresholds compared: peak - delta and peak + delta
UNSTABLE_CHANGE = 0.5  # flag when the count changes by more than this share between them
MIN_CELLS = 5  # below this many cells, shares and swings say little
BORDER_SHARE = 0.5
SEAM_SHARE = 0.5
MISSED_SHARE = 0.5  # flag when more than this share of the map's cell area lies outside every cell found
MISSED_MIN_AREA = 0.01  # ... and that uncovered area is at least this share of the image (not a few specks)
EDGE_MADS = 4.0  # an edge: gradient magnitude this many robust deviations above the image's median
EDGE_MIN_AREA = 25  # edge pieces smaller than this (pixels, after a 3 px dilation) are noise
STRUCTURE_MIN = 0.15  # the structure flag needs structure on at least this share of the image ...
STRUCTURE_COVERED = 0.35  # ... of which the cells found (with a margin) cover less than this share


def centre_count(distance: np.ndarray, threshold: float) -> int:
    """Number of connected regions above `threshold` (8-connected): the cells the marker rule would seed."""
    import cv2

    count, _ = cv2.connectedComponents((distance > threshold).astype(np.uint8), connectivity=8)
    return count - 1


@dataclass(frozen=True)
class MapFacts:
    """What the checks read of one result, gathered once by the caller: the distance map and the
    `peak` threshold; per cell whether it `touches_border` and whether one tile held it whole
    (`whole_in_tile`); the estimated cell `diameter` in the image's pixels and the `scale` applied
    before the model; the `labels` and the `fill` threshold that made them (to compare the map's
    cell area with the cells found) and the uint8 `image` (its structure)."""

    distance: np.ndarray
    peak: float
    touches_border: np.ndarray
    whole_in_tile: np.ndarray | None = None
    diameter: float | None = None
    scale: float = 1.0
    labels: np.ndarray | None = None
    fill: float | None = None
    image: np.ndarray | None = None


def quality_warnings(facts: MapFacts, trained: tuple[float, float] | None = None) -> list[str]:
    """Reasons not to trust this result, each with a suggested fix; empty when none. `trained` is
    the model's trained diameter range (in the model's pixels)."""
    distance, peak, diameter, labels = facts.distance, facts.peak, facts.diameter, facts.labels
    top = float(distance.max()) if distance.size else 0.0
    if top <= peak:
        return [f"no cell centre reaches the peak threshold (map maximum {top:.2f}, peak {peak:.2f}), so 0 cells may "
                f"be wrong: try --peak {max(0.05, round(0.8 * top, 2)):.2f}, --diameter with the cells' size in "
                "pixels, or another model"]
    warnings = [] if labels is None or facts.fill is None else missed_cells(distance, labels, facts.fill)
    if labels is not None and facts.image is not None and not warnings:
        warnings = unread_structure(facts.image, labels, diameter)
    size_hint = f" (these measure about {diameter:.0f} px)" if diameter else ""
    low, high = centre_count(distance, max(peak - PEAK_DELTA, 0.0)), centre_count(distance, peak + PEAK_DELTA)
    if max(low, high) >= MIN_CELLS and abs(low - high) > UNSTABLE_CHANGE * max(low, high):
        warnings.append(f"cell count unstable: {low} at peak {peak - PEAK_DELTA:.2f} but {high} at "
                        f"{peak + PEAK_DELTA:.2f}; check the overlay and set --peak to what it shows, or give "
                        f"--diameter with the cells' size in pixels{size_hint}")
    touches_border, whole_in_tile, scale = facts.touches_border, facts.whole_in_tile, facts.scale
    if len(touches_border) >= MIN_CELLS and float(np.mean(touches_border)) > BORDER_SHARE:
        warnings.append(f"{np.mean(touches_border):.0%} of cells touch the image border: the cells may be larger "
                        f"than the model expects; give --diameter with their size in pixels{size_hint}")
    if whole_in_tile is not None and len(whole_in_tile) >= MIN_CELLS and float(np.mean(~whole_in_tile)) > SEAM_SHARE:
        warnings.append(f"{np.mean(~whole_in_tile):.0%} of cells are larger than a tile holds whole (they cross the "
                        f"tile seams): give --diameter with their size in pixels{size_hint} to shrink them")
    if diameter and trained and not trained[0] <= diameter * scale <= trained[1]:
        warnings.append(f"cells measure about {diameter * scale:.0f} px as the model sees them, outside the "
                        f"{trained[0]:.0f}-{trained[1]:.0f} px it was trained on: give --diameter {diameter:.0f} "
                        "(or the true size) so they are rescaled")
    return warnings


def missed_cells(distance: np.ndarray, labels: np.ndarray, fill: float) -> list[str]:
    """One warning when most of the map's cell area (above `fill`) lies outside every cell found: the
    model saw cell bodies there, too faint for a centre to reach the peak threshold."""
    area = distance > fill
    uncovered = int(np.count_nonzero(area & (labels == 0)))
    share = uncovered / max(int(np.count_nonzero(area)), 1)
    if share <= MISSED_SHARE or uncovered < MISSED_MIN_AREA * distance.size:
        return []
    return [f"{share:.0%} of the area the map marks as cells lies outside the {int(labels.max())} cells found, so "
            "most cells were probably missed (faint cell bodies whose centres stay under the peak threshold: an "
            "appearance the model was not trained on); check the overlay, try a lower --peak, --diameter with "
            "the cells' size, or a model adapted to these images (samcell-rt adapt)"]


def structure(image: np.ndarray) -> np.ndarray:
    """Where the image shows something: its edges (gradient magnitude, after a light blur, more than
    `EDGE_MADS` robust deviations above the median, which in any image that is not all edges is the
    noise; pieces under `EDGE_MIN_AREA` pixels are its peaks) and every region they close, so a cell
    drawn only by its outline counts whole."""
    import cv2
    from scipy import ndimage

    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    median = float(np.median(magnitude))
    spread = 1.4826 * float(np.median(np.abs(magnitude - median)))
    edges = cv2.dilate((magnitude > median + EDGE_MADS * max(spread, 1e-3)).astype(np.uint8), np.ones((3, 3), np.uint8))
    _, pieces, stats, _ = cv2.connectedComponentsWithStats(edges, connectivity=8)
    return ndimage.binary_fill_holes((stats[:, cv2.CC_STAT_AREA] >= EDGE_MIN_AREA)[pieces] & (pieces > 0))


def unread_structure(image: np.ndarray, labels: np.ndarray, diameter: float | None) -> list[str]:
    """One warning when most of the image's `structure` lies outside the cells found (each widened by
    15 % of the cell diameter, for halos and blur): cells the model did not read at all."""
    import cv2

    shown = structure(image)
    share = float(shown.mean())
    if share < STRUCTURE_MIN:
        return []
    margin = max(2, round(0.15 * (diameter or 20)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    found = cv2.dilate((labels > 0).astype(np.uint8), disc) > 0
    covered = float(np.count_nonzero(shown & found)) / np.count_nonzero(shown)
    if covered >= STRUCTURE_COVERED:
        return []
    return [f"the {int(labels.max())} cells found cover {covered:.0%} of the image's structure ({share:.0%} of the image "
            "shows edges or closed outlines), so most cells were probably not read at all (an appearance the model "
            "was not trained on, such as a membrane stain that draws cells only by their outline); check the "
            "overlay, try --diameter with the cells' size, or a model adapted to these images (samcell-rt adapt)"]
