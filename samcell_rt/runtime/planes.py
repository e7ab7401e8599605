"""What a format reader hands `io.read_image`, and the bounds it reads under.

`Planes` is the one shape every reader (TIFF, PNG/JPEG/BMP, CZI/ND2/LIF, OME-Zarr) returns: the
decoded array with its axes and the file's own calibration, as named fields, so io reduces any of
them to gray frames the same way. `ReadLimits` is the one check of a header's claim against the
pixel and byte limits: each reader calls `claim` once, from the header, before decoding a pixel.
Its own module so the readers share both without importing each other (as with limits.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .limits import check_bytes, check_pixels


@dataclass(frozen=True)
class Planes:
    """One file's pixels as read: `axes` in io's letters (T, Z, C, S = colour samples, Y, X; any other
    letter is one more axis of frames), the pixel size in micrometres and where it came from (`source`,
    "" without one), the time between frames in `time_unit` ("" when the frames are no time series,
    "frame" when the interval is unknown), and what the reader noticed about the file (`remarks`)."""

    data: np.ndarray
    axes: str
    pixel_size_um: float | None = None
    source: str = ""
    frame_interval: float | None = None
    time_unit: str = ""
    remarks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadLimits:
    """The bounds of one read of `path`: pixels a header may claim, bytes it may decode (None: no bound)."""

    path: Path
    max_pixels: int
    max_bytes: int | None = None

    def claim(self, shape: tuple[int, ...], itemsize: int | None = 1) -> None:
        """Refuse the header's `shape` (`itemsize` bytes a sample) before anything is decoded.
        `itemsize` None: the reader bounds the bytes itself (OME-Zarr, by the chunks a read touches)."""
        check_pixels(self.path, shape, self.max_pixels)
        if itemsize is not None:
            check_bytes(self.path, int(np.prod(shape, dtype=np.float64)) * itemsize, self.max_bytes)
