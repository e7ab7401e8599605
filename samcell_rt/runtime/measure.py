"""Per-image and per-cell measurements of a label image.

Per-cell shape values come from scikit-image's `regionprops` (the reference definitions);
samcell-rt adds circularity (4*pi*area / perimeter^2), aspect ratio (major / minor axis), the
touches-border flag and neighbour counts. Two cells are neighbours when their labels come within
`NEIGHBOUR_GAP` pixels of each other (8-connected at distance 1 means touching), read from the
label adjacency of the image itself.
"""

from __future__ import annotations

import numpy as np

from .limits import pixel_size_problem

NEIGHBOUR_GAP = 2
_REGIONPROPS = ("label", "centroid", "area", "perimeter", "equivalent_diameter_area", "axis_major_length",
                "axis_minor_length", "eccentricity", "solidity")
# per-cell columns that scale with the pixel size: name -> power of the pixel size
_PHYSICAL = {"area": 2, "perimeter": 1, "equivalent_diameter": 1, "major_axis": 1, "minor_axis": 1,
             "centroid_y": 1, "centroid_x": 1}


def neighbour_pairs(labels: np.ndarray, gap: int = NEIGHBOUR_GAP) -> np.ndarray:
    """(n, 2) array of label pairs (a < b) whose pixels lie within `gap` pixels (Chebyshev)."""
    pairs = []
    height, width = labels.shape
    for dy in range(0, gap + 1):
        for dx in range(-gap, gap + 1):
            if dy == 0 and dx <= 0:
                continue  # each offset once
            a = labels[: height - dy, max(0, -dx) : width - max(0, dx)]
            b = labels[dy:, max(0, dx) : width - max(0, -dx)]
            touching = (a != b) & (a > 0) & (b > 0)
            pairs.append(np.stack([a[touching], b[touching]], axis=1))
    found = np.concatenate(pairs) if pairs else np.zeros((0, 2), labels.dtype)
    return np.unique(np.sort(found, axis=1), axis=0)


def neighbour_counts(labels: np.ndarray, ids: np.ndarray, gap: int = NEIGHBOUR_GAP) -> np.ndarray:
    """Number of neighbouring cells for each label in `ids`."""
    pairs = neighbour_pairs(labels, gap)
    counts = np.bincount(pairs.ravel(), minlength=int(labels.max(initial=0)) + 1)
    return counts[ids]


def cell_table(labels: np.ndarray, intensity: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-cell columns in pixel units, one entry per label in ascending id order."""
    from skimage.measure import regionprops_table

    props = list(_REGIONPROPS) + (["intensity_mean"] if intensity is not None else [])
    raw = regionprops_table(labels, intensity_image=intensity, properties=props)
    ids = raw["label"].astype(np.int64)
    area, perimeter = raw["area"].astype(np.float64), raw["perimeter"]
    major, minor = raw["axis_major_length"], raw["axis_minor_length"]
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)
        aspect = np.where(minor > 0, major / minor, np.nan)
    border = np.zeros(int(labels.max(initial=0)) + 1, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        border[edge] = True
    table = {
        "id": ids, "centroid_y": raw["centroid-0"], "centroid_x": raw["centroid-1"], "area": area,
        "perimeter": perimeter, "equivalent_diameter": raw["equivalent_diameter_area"], "major_axis": major,
        "minor_axis": minor, "aspect_ratio": aspect, "circularity": circularity,
        "solidity": raw["solidity"], "eccentricity": raw["eccentricity"],
        "neighbours": neighbour_counts(labels, ids), "touches_border": border[ids],
    }
    if intensity is not None:
        table["mean_intensity"] = raw["intensity_mean"]
    return table


def known_pixel_size(value: float | None) -> float | None:
    """`value` as a float when it is a usable pixel size (`limits.pixel_size_problem`), else None:
    pixel units only. Where areas and TIFF resolutions are computed, so NaN, inf or 1e300 (whose
    square overflows) from any caller never reach them."""
    return None if value is None or pixel_size_problem(value) else float(value)


def with_physical_units(table: dict[str, np.ndarray], pixel_size_um: float | None) -> dict[str, np.ndarray]:
    """The table plus micrometre columns (area_um2, perimeter_um, ...) when the pixel size is known."""
    pixel_size_um = known_pixel_size(pixel_size_um)
    if not pixel_size_um:
        return table
    extra = {f"{name}_um{power if power > 1 else ''}": table[name] * pixel_size_um**power
             for name, power in _PHYSICAL.items()}
    return {**table, **extra}


def area_metrics(areas: np.ndarray, pixels: int, pixel_size_um: float | None = None) -> dict[str, float]:
    """Count, mean/median area and confluency from per-label pixel counts (zeros = unused ids);
    mean area in square micrometres when the pixel size is known."""
    areas = areas[areas > 0]
    metrics = {
        "cells": int(areas.size),
        "mean_area_px": float(areas.mean()) if areas.size else 0.0,
        "median_area_px": float(np.median(areas)) if areas.size else 0.0,
        "confluency": float(areas.sum() / pixels) if pixels else 0.0,
    }
    pixel_size_um = known_pixel_size(pixel_size_um)
    if pixel_size_um:
        metrics["mean_area_um2"] = metrics["mean_area_px"] * pixel_size_um**2
    return metrics


def image_metrics(labels: np.ndarray, cells: dict[str, np.ndarray] | None = None,
                  pixel_size_um: float | None = None) -> dict[str, float]:
    """Cell count, mean/median area (pixels), confluency (covered fraction), mean neighbours."""
    metrics = area_metrics(np.bincount(labels.ravel())[1:], labels.size, pixel_size_um)
    if cells is not None:
        metrics["mean_neighbours"] = float(cells["neighbours"].mean()) if metrics["cells"] else 0.0
    return metrics


def json_columns(table: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-cell columns as JSON-ready lists (NaN -> None, booleans -> 0/1)."""
    def plain(values: np.ndarray) -> list:
        if values.dtype == bool:
            return values.astype(int).tolist()
        if values.dtype.kind == "f":
            return [None if np.isnan(v) else round(float(v), 6) for v in values]
        return values.tolist()

    return {name: plain(values) for name, values in table.items()}
