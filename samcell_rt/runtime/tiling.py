"""The reference tile grid and cosine-weighted blending of per-tile distance maps.

Grid (SAMCell's sliding window, for images at least one tile large): along each axis tiles start
every `tile - 2*overlap` pixels (192 for 256/32); the last tile is aligned so that it ends
`overlap` pixels past the far edge, reading reflected pixels there (OpenCV BORDER_REFLECT, numpy
"symmetric"). Where the reference would also start a regular tile beyond that last one (lengths
192k+1 .. 192k+31), it cuts that tile short and feeds a non-square crop to the model; here that
redundant tile is dropped, the last tile already covering its pixels. An axis shorter than a tile
gets one tile, reflect-padded to full size.

Blending weights are the reference's: 0.5 * (1 - cos(pi * i / overlap)) on the outer `overlap`
pixels of every tile edge, multiplied across the two axes. The reference gives the image's first
row and column zero total weight and then fills them from the wrong pixels; here every weight
has a tiny floor (1e-12), so those pixels take the plain mean of the tiles covering them while
all other pixels are unchanged to float32 precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TILE = 256
OVERLAP = 32
_WEIGHT_FLOOR = 1e-12


@dataclass(frozen=True)
class TileGrid:
    """Tile origins (top-left, in image pixels) for one image of `height` x `width`."""

    height: int
    width: int
    ys: np.ndarray
    xs: np.ndarray
    tile: int = TILE
    overlap: int = OVERLAP

    @property
    def origins(self) -> np.ndarray:
        """(n, 2) array of (y, x) tile origins, row by row."""
        yy, xx = np.meshgrid(self.ys, self.xs, indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def axis_starts(length: int, tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """Tile start positions along one axis of `length` pixels."""
    if length < tile:
        return np.zeros(1, dtype=np.int64)
    last = length + overlap - tile
    return np.asarray([*range(0, last, tile - 2 * overlap), last], dtype=np.int64)


def tile_grid(height: int, width: int, tile: int = TILE, overlap: int = OVERLAP) -> TileGrid:
    """The grid of tiles covering an image of the given size."""
    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({height}x{width})")
    return TileGrid(height, width, axis_starts(height, tile, overlap), axis_starts(width, tile, overlap), tile, overlap)


def extract_tiles(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Cut (n, tile, tile) tiles from a 2-D image following `grid`, reflecting past the edges."""
    pad_y = max(0, int(grid.ys.max()) + grid.tile - grid.height)
    pad_x = max(0, int(grid.xs.max()) + grid.tile - grid.width)
    padded = np.pad(image, ((0, pad_y), (0, pad_x)), mode="symmetric") if pad_y or pad_x else image
    tiles = np.empty((len(grid), grid.tile, grid.tile), dtype=image.dtype)
    for k, (y, x) in enumerate(grid.origins):
        tiles[k] = padded[y : y + grid.tile, x : x + grid.tile]
    return tiles


def edge_weights(tile: int = TILE, overlap: int = OVERLAP) -> np.ndarray:
    """The reference blending weights of one tile, (tile, tile) float32, with a tiny floor."""
    ramp = 0.5 * (1.0 - np.cos(np.pi * np.arange(overlap) / overlap))
    profile = np.ones(tile, dtype=np.float64)
    profile[:overlap] *= ramp
    profile[tile - overlap :] *= ramp[::-1]
    return (np.outer(profile, profile) + _WEIGHT_FLOOR).astype(np.float32)


def blend(maps: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Blend per-tile maps (n, tile, tile) into one (height, width) float32 map."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    if maps.shape != (len(grid), grid.tile, grid.tile):
        raise ValueError(f"expected maps of shape {(len(grid), grid.tile, grid.tile)}, got {maps.shape}")
    acc = np.zeros((grid.height, grid.width), dtype=np.float32)
    wsum = np.zeros((grid.height, grid.width), dtype=np.float32)
    origins = grid.origins
    from ._blend_kernel import accumulate  # numba compiles on first use: keep it off import time

    accumulate(maps, origins[:, 0].copy(), origins[:, 1].copy(), edge_weights(grid.tile, grid.overlap), acc, wsum)
    acc /= wsum
    return acc


def whole_in_a_tile(labels: np.ndarray, grid: TileGrid, scale: float = 1.0) -> np.ndarray:
    """Per cell (ids 1..N of `labels`, at the image's size), whether some tile of `grid` (laid on the
    image resized by `scale`) holds the whole cell. Overlapping tiles hold any cell up to 2 * overlap
    pixels across; a cell no tile holds was only ever seen in pieces."""
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    present = np.array([box is not None for box in boxes], dtype=bool)
    spans = np.array([[(s.start, s.stop) for s in box] if box is not None else [(0, 0), (0, 0)] for box in boxes],
                     dtype=np.float64).reshape(len(boxes), 2, 2) * scale  # (cell, axis, start/stop)
    inside = np.ones(len(boxes), dtype=bool)
    for axis, starts in enumerate((grid.ys, grid.xs)):
        low, high = spans[:, axis, :1], spans[:, axis, 1:]  # (cell, 1) against (tile starts,)
        inside &= np.any((starts <= low + 0.5) & (high - 0.5 <= starts + grid.tile), axis=1)
    return inside | ~present
