"""Whole-well and whole-plate mosaics in bounded memory: bands in, tiled BigTIFF labels out.

The image is read lazily in horizontal bands (tifffile + zarr: strips or tiles, compressed or
not). Tile rows go through the engine one at a time; the blend is accumulated in a rolling
buffer and rows leave it as soon as no later tile touches them. Labels are computed per band of
`band` rows on a window reaching `halo` rows above and below, and only the band's own rows are
kept; a cell that also has pixels in the rows above the band keeps the id the previous band gave
it there. With a halo larger than any cell (default 256 px) each cell sees the same distance
values and markers as in the whole-image run, so labels equal the in-memory path up to
renumbering (tests check this on cells placed across band boundaries). Labels are streamed to a
tiled, compressed uint32 BigTIFF (uint32 because the cell count is unknown until the end).

Scaling to 8 bit uses the image's full value range, found in a first streaming pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .measure import area_metrics
from .postprocess import labels_from_distance
from .preprocess import enhance_tiles, to_uint8
from .segmenter import Segmenter
from .tiling import OVERLAP, TileGrid, axis_starts, edge_weights, extract_tiles

PLATE_PIXELS = 8192 * 8192  # images above this many pixels take the banded path
BAND = 1024
HALO = 256
TIFF_TILE = 256


@dataclass
class PlateResult:
    """Per-image numbers of a plate (the labels went to disk), and where the time went."""

    shape: tuple[int, int]
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


class LazyImage:
    """Row bands of a 2-D TIFF plane read on demand."""

    def __init__(self, path: str | Path) -> None:
        import tifffile
        import zarr

        self._tif = tifffile.TiffFile(path)
        series = self._tif.series[0]
        if len(series.shape) != 2:
            raise ValueError(f"{path}: banded processing needs a single 2-D plane, got shape {series.shape}")
        self.array = zarr.open(series.aszarr(), mode="r")
        self.shape: tuple[int, int] = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop, :])

    def value_range(self, chunk: int = 1024) -> tuple[float, float]:
        """min..max over the whole plane, streamed (uint8 needs no scaling: no pass)."""
        if self.dtype == np.uint8:
            return 0.0, 255.0
        lo, hi = np.inf, -np.inf
        for start in range(0, self.shape[0], chunk):
            band = self.rows(start, start + chunk)
            if band.dtype.kind == "f" and not np.isfinite(band).all():
                from .preprocess import ImageValueError

                raise ImageValueError("image contains NaN or infinite values")
            lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
        return lo, hi

    def close(self) -> None:
        self._tif.close()


def distance_rows(image: LazyImage, segmenter: Segmenter, timings: dict) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, finished distance rows) in order, holding only about one tile row in memory."""
    from ._blend_kernel import accumulate

    height, width = image.shape
    tile, overlap = segmenter.info.tile, OVERLAP
    ys, xs = axis_starts(height, tile, overlap), axis_starts(width, tile, overlap)
    lo, hi = image.value_range()
    weights = edge_weights(tile, overlap)
    base = 0  # image row of the accumulators' first row
    acc = np.zeros((0, width), np.float32)
    wsum = np.zeros((0, width), np.float32)
    for k, y in enumerate(ys):
        start = time.perf_counter()
        band = to_uint8(image.rows(y, min(height, y + tile)), value_range=(lo, hi))
        grid = TileGrid(band.shape[0], width, np.zeros(1, np.int64), xs, tile, overlap)
        tiles = enhance_tiles(extract_tiles(band, grid))
        timings["preprocess"] += (t1 := time.perf_counter()) - start
        maps = np.concatenate([segmenter.engine.run(tiles[i : i + segmenter.batch_size][:, None])
                               for i in range(0, len(tiles), segmenter.batch_size)])[:, 0]
        timings["engine"] += (t2 := time.perf_counter()) - t1
        end = min(height, y + tile)
        if end - base > acc.shape[0]:  # grow the rolling buffers to cover this tile row
            grow = end - base - acc.shape[0]
            acc = np.concatenate([acc, np.zeros((grow, width), np.float32)])
            wsum = np.concatenate([wsum, np.zeros((grow, width), np.float32)])
        accumulate(np.ascontiguousarray(maps, np.float32), np.full(len(xs), y - base, np.int64), xs.copy(), weights,
                   acc, wsum)
        done = (ys[k + 1] if k + 1 < len(ys) else height) - base
        rows = acc[:done] / wsum[:done]
        acc, wsum = acc[done:].copy(), wsum[done:].copy()
        timings["blend"] += time.perf_counter() - t2
        yield base, rows
        base += done


def label_bands(distances: Iterator[tuple[int, np.ndarray]], height: int, width: int, peak: float, fill: float,
                band: int, halo: int, timings: dict) -> Iterator[np.ndarray]:
    """Final uint32 label rows, `band` rows at a time (the last band may be shorter)."""
    buffer = np.zeros((0, width), np.float32)
    buffer_start = 0  # image row of buffer[0]
    previous = np.zeros((0, width), np.uint32)  # final labels of the `halo` rows above the band
    next_id = 1
    band_start = 0
    exhausted = False
    while band_start < height:
        band_end = min(height, band_start + band)
        need = min(height, band_end + halo)
        while buffer_start + buffer.shape[0] < need and not exhausted:
            try:
                _, rows = next(distances)
            except StopIteration:
                exhausted = True
                break
            buffer = np.concatenate([buffer, rows])
        start = time.perf_counter()
        window_start = max(0, band_start - halo)
        window = buffer[window_start - buffer_start : need - buffer_start]
        local = labels_from_distance(window, peak, fill)
        labels, next_id = _stitch(local, band_start - window_start, band_end - window_start, previous, next_id)
        timings["postprocess"] += time.perf_counter() - start
        yield labels
        previous = np.concatenate([previous, labels])[-halo:]
        band_start = band_end
        drop = max(0, band_start - halo) - buffer_start
        buffer, buffer_start = buffer[drop:], buffer_start + drop


def _stitch(local: np.ndarray, core_start: int, core_end: int, previous: np.ndarray,
            next_id: int) -> tuple[np.ndarray, int]:
    """Global ids for the core rows of a window: cells continuing from above keep their id."""
    core = local[core_start:core_end]
    ids = np.unique(core)
    ids = ids[ids > 0]
    mapping = np.zeros(int(local.max(initial=0)) + 1, np.uint32)
    above = local[core_start - len(previous) : core_start] if len(previous) else local[:0]
    for cell in ids:
        inherited = previous[above == cell] if len(above) else previous[:0].ravel()
        inherited = inherited[inherited > 0]
        if inherited.size:
            values, counts = np.unique(inherited, return_counts=True)
            mapping[cell] = values[np.argmax(counts)]
        else:
            mapping[cell] = next_id
            next_id += 1
    return mapping[core], next_id


def segment_plate(path: str | Path, out_labels: str | Path, segmenter: Segmenter, band: int = BAND,
                  halo: int = HALO) -> PlateResult:
    """Segment a large 2-D TIFF in bands; write labels as a tiled BigTIFF; return per-image numbers."""
    import tifffile

    if band % TIFF_TILE:
        raise ValueError(f"band must be a multiple of {TIFF_TILE}")
    timings = dict.fromkeys(("preprocess", "engine", "blend", "postprocess", "measure"), 0.0)
    image = LazyImage(path)
    height, width = image.shape
    areas = np.zeros(1, np.int64)
    try:
        def tiles() -> Iterator[np.ndarray]:
            nonlocal areas
            bands = label_bands(distance_rows(image, segmenter, timings), height, width, segmenter.peak,
                                segmenter.fill, band, halo, timings)
            for labels in bands:
                counts = np.bincount(labels.ravel())
                if len(counts) > len(areas):
                    areas = np.concatenate([areas, np.zeros(len(counts) - len(areas), np.int64)])
                areas[: len(counts)] += counts
                for y in range(0, labels.shape[0], TIFF_TILE):
                    for x in range(0, width, TIFF_TILE):
                        block = np.zeros((TIFF_TILE, TIFF_TILE), np.uint32)
                        part = labels[y : y + TIFF_TILE, x : x + TIFF_TILE]
                        block[: part.shape[0], : part.shape[1]] = part
                        yield block

        with atomic_path(out_labels) as tmp:
            tifffile.imwrite(tmp, tiles(), shape=(height, width), dtype=np.uint32, tile=(TIFF_TILE, TIFF_TILE),
                             compression="zlib", bigtiff=True, photometric="minisblack")
    finally:
        image.close()
    start = time.perf_counter()
    metrics = area_metrics(areas[1:], height * width)
    timings["measure"] = time.perf_counter() - start
    return PlateResult((height, width), metrics, timings)


def is_plate(path: Path, threshold: int = PLATE_PIXELS) -> bool:
    """A single-plane TIFF larger than `threshold` pixels (read from the header only)."""
    import tifffile

    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:
        return False  # let the normal reader report what is wrong with it
    return len(shape) == 2 and shape[0] * shape[1] > threshold
