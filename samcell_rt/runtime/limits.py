"""The pixel limit every reader checks against a header's claimed size before decoding anything.

Its own module so the format readers (io, containers, ome_zarr) share it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageReadError


def check_pixels(path: Path, shape: tuple[int, ...], max_pixels: int) -> None:
    """Refuse a header that claims more pixels than allowed, before anything is decoded."""
    pixels = int(np.prod(shape, dtype=np.float64))
    if pixels > max_pixels:
        raise ImageReadError(path, f"header claims {' x '.join(map(str, shape))} = {pixels:,} pixels, above the limit "
                                   f"of {max_pixels:,} (raise it with --max-pixels if the image is real)")
