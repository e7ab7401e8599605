"""Image scaling to uint8 and the reference per-tile contrast step (CLAHE + min-max).

SAMCell's published pipeline casts images straight to uint8, which wraps 16-bit values. Here any
dtype is scaled linearly from a value range to 0..255 instead; uint8 passes through unchanged so
8-bit results stay identical to the reference.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import ImageValueError

CLAHE_CLIP = 1.0
CLAHE_GRID = (8, 8)
Scaling = Literal["range", "percentile"]
PERCENTILES = (0.1, 99.9)


def to_uint8(image: np.ndarray, scaling: Scaling = "range", percentiles: tuple[float, float] = PERCENTILES,
             value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scale a 2-D plane of any dtype to uint8 without wrap-around.

    "range" maps the image's own min..max onto 0..255 (nothing clipped); "percentile" maps the
    given percentiles and saturates the few values outside them, which suits images with hot
    pixels. A constant image becomes all zeros. `value_range` supplies min..max measured
    elsewhere (a band of a plate scaled with the whole plate's range).
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    values = image.astype(np.float32, copy=False)
    if image.dtype.kind == "f" and not np.isfinite(values).all():
        raise ImageValueError("image contains NaN or infinite values")
    if value_range is not None:
        lo, hi = value_range
    elif scaling == "percentile":
        lo, hi = (float(v) for v in np.percentile(values, percentiles))
    else:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def enhance_tile(tile: np.ndarray) -> np.ndarray:
    """The reference per-tile contrast step: CLAHE (clip 1, 8x8 grid) then min-max to 0..255."""
    import cv2

    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_GRID)
    return cv2.normalize(clahe.apply(tile), None, 0, 255, cv2.NORM_MINMAX)


def enhance_tiles(tiles: np.ndarray) -> np.ndarray:
    """Apply `enhance_tile` to a stack of uint8 tiles (N, T, T), returning a new array."""
    out = np.empty_like(tiles)
    for i, tile in enumerate(tiles):
        out[i] = enhance_tile(tile)
    return out
