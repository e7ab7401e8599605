"""The pixel limit every reader checks against a header's claimed size before decoding anything,
the limit on bytes decoded (the service's upload limit: a small compressed upload must not inflate
past it), and the sanity range of a declared pixel size.

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


def check_bytes(path: Path, nbytes: int, max_bytes: int | None, what: str = "") -> None:
    """Refuse a read that would decode more than `max_bytes` (None: no such limit), before it starts."""
    if max_bytes is not None and nbytes > max_bytes:
        raise ImageReadError(path, f"reading it decodes {nbytes / 2**20:,.1f} MB{f' ({what})' if what else ''}, above "
                                   f"the {max_bytes / 2**20:g} MB limit on decoded data")


SANE_PIXEL_UM = (1e-4, 1e4)  # 0.1 nm to 1 cm per pixel: a calibration outside this is damaged, not a microscope's


def pixel_size_problem(value: float) -> str:
    """Why a pixel size a file declares cannot be used ("" when it can): NaN, infinite, zero, negative
    or absurd values would turn into NaN or overflowing areas downstream, so they count as unknown."""
    low, high = SANE_PIXEL_UM
    if not np.isfinite(value) or value <= 0:
        return f"pixel size {value:g} um is not a positive finite number"
    if not low <= value <= high:
        return f"pixel size {value:g} um is outside {low:g}..{high:g} um"
    return ""
