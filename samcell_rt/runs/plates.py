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
OME-Zarr fields and images are read the same way, by their own chunks.

Preprocessing follows the run's options like every other input: the 8-bit scaling uses the
plate's whole value range (`range`, found in a first streaming pass) or its percentiles
(`percentile`, from an even subsample of at most SAMPLE_PIXELS pixels); tiles go through the
segmenter's own batching and output checks; the pixel size comes from `--pixel-size` or trusted
metadata. The header's size is checked against the pixel limit before anything is read, and
`progress` hears (tiles done, tiles total) after every tile row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, ImageValueError
from ..runtime.atomic import atomic_path
from ..runtime.io import tiff_pixel_size_um, tiff_warnings
from ..runtime.limits import check_pixels
from ..runtime.measure import area_metrics
from ..runtime.postprocess import labels_from_distance
from ..runtime.preprocess import PERCENTILES, enhance_tiles, to_uint8
from ..runtime.segmenter import STAGES, Segmenter
from ..runtime.tiling import OVERLAP, TileGrid, axis_starts, edge_weights, extract_tiles
from .files import FileOutcome, Progress, RunOptions, zarr_labels
from .outputs import KINDS, output_name
from .summary import SummaryRow
from .zarr_inputs import input_stem

BAND = 1024
HALO = 256
TIFF_TILE = 256
SAMPLE_PIXELS = 10_000_000


@dataclass(frozen=True)
class Bands:
    """How labels are cut: `band` rows at a time (a multiple of the TIFF tile), each labelled on a window
    reaching `halo` rows above and below (larger than any cell: then labels equal the whole-image run's)."""

    band: int = BAND
    halo: int = HALO

    def __post_init__(self) -> None:
        if self.band % TIFF_TILE:
            raise ValueError(f"band must be a multiple of {TIFF_TILE}")


@dataclass
class PlateResult:
    """Per-image numbers of a plate (the labels went to disk), and where the time went."""

    shape: tuple[int, int]
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    pixel_size_um: float | None = None
    pixel_size_source: str = ""
    warnings: list[str] = field(default_factory=list)  # what the TIFF reader noticed, once each


class LazyImage:
    """Row bands of a 2-D TIFF plane, or of an OME-Zarr image's plane (one `channel`), read on demand."""

    def __init__(self, path: str | Path, max_pixels: int, channel: int | None = None) -> None:
        import tifffile
        import zarr

        path = Path(path)
        self._tif = None
        if _is_zarr(path):
            self._open_zarr(path, max_pixels, channel)
            return
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types for corrupt input
            raise ImageReadError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
        try:
            series = self._tif.series[0]
            if len(series.shape) != 2:
                raise ImageReadError(path, f"banded processing needs a single 2-D plane, got shape {series.shape}")
            check_pixels(path, series.shape, max_pixels)
            self.array = zarr.open(series.aszarr(), mode="r")
        except BaseException:
            self._tif.close()
            raise
        self.shape: tuple[int, int] = tuple(series.shape)
        self.dtype = np.dtype(series.dtype)
        self.pixel_size_um, self.pixel_size_source = tiff_pixel_size_um(self._tif)

    def _open_zarr(self, path: Path, max_pixels: int, channel: int | None) -> None:
        from ..runtime.ome_zarr import Plane, open_image

        image = open_image(path)
        self.array = Plane(image, path, channel)
        check_pixels(path, self.array.shape, max_pixels)
        self.shape, self.dtype = self.array.shape, self.array.dtype
        self.pixel_size_um, self.pixel_size_source, _ = image.pixel_size_um()

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop, :])

    def bands(self, chunk: int = 1024, step: int = 1) -> Iterator[np.ndarray]:
        """The plane in row bands (every `step`-th row and column), checked for NaN/inf."""
        for start in range(0, self.shape[0], chunk):
            band = self.rows(start, start + chunk)[::step, ::step]
            if band.dtype.kind == "f" and not np.isfinite(band).all():
                raise ImageValueError("image contains NaN or infinite values")
            yield band

    def value_range(self, scaling: str) -> tuple[float, float]:
        """The values that map to 0 and 255: min..max, or percentiles of an even subsample."""
        if self.dtype == np.uint8:
            return 0.0, 255.0
        if scaling == "percentile":
            step = max(1, math.ceil(math.sqrt(self.shape[0] * self.shape[1] / SAMPLE_PIXELS)))
            sample = np.concatenate([band.ravel() for band in self.bands(step=step)]).astype(np.float32)
            lo, hi = np.percentile(sample, PERCENTILES)
            return float(lo), float(hi)
        lo, hi = np.inf, -np.inf
        for band in self.bands():
            lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
        return lo, hi

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()


def distance_rows(image: LazyImage, segmenter: Segmenter, timings: dict,
                  progress: Progress | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, finished distance rows) in order, holding only about one tile row in memory."""
    from ..runtime._blend_kernel import accumulate

    height, width = image.shape
    tile, overlap = segmenter.info.tile, OVERLAP
    ys, xs = axis_starts(height, tile, overlap), axis_starts(width, tile, overlap)
    lo, hi = image.value_range(segmenter.scaling)
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
        maps = segmenter.run_tiles(tiles)
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
        if progress is not None:
            progress((k + 1) * len(xs), len(ys) * len(xs))
        yield base, rows
        base += done


def label_bands(distances: Iterator[tuple[int, np.ndarray]], shape: tuple[int, int], thresholds: tuple[float, float],
                bands: Bands, timings: dict) -> Iterator[np.ndarray]:
    """Final uint32 label rows, `bands.band` rows at a time (the last band may be shorter); `thresholds`
    are (peak, fill)."""
    (height, width), (peak, fill), band, halo = shape, thresholds, bands.band, bands.halo
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


def segment_plate(path: str | Path, out_labels: str | Path, segmenter: Segmenter, options: RunOptions,
                  bands: Bands = Bands(), progress: Progress | None = None) -> PlateResult:
    """Segment a large 2-D TIFF or OME-Zarr plane in bands; write labels as a tiled BigTIFF; return per-image numbers."""
    import tifffile

    timings = dict.fromkeys(STAGES, 0.0)
    with tiff_warnings() as messages:  # reported once, with the file's name, not printed by tifffile
        image = LazyImage(path, options.max_pixels, options.channel)
        height, width = image.shape
        areas = np.zeros(1, np.int64)
        try:
            def tiles() -> Iterator[np.ndarray]:
                nonlocal areas
                rows = distance_rows(image, segmenter, timings, progress)
                for labels in label_bands(rows, (height, width), (segmenter.peak, segmenter.fill), bands, timings):
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
    pixel_size, source = (options.pixel_size_um, "option") if options.pixel_size_um else \
        (image.pixel_size_um, image.pixel_size_source)
    metrics = area_metrics(areas[1:], height * width, pixel_size)
    timings["measure"] = time.perf_counter() - start
    return PlateResult((height, width), metrics, timings, pixel_size, source, list(dict.fromkeys(messages)))


def _is_zarr(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".zip"


def is_plate(path: Path, threshold: int) -> bool:
    """A single-plane TIFF, or an OME-Zarr image of one plane (per channel), larger than `threshold`
    pixels (read from the header or metadata only)."""
    import tifffile

    if _is_zarr(path):
        from ..runtime.ome_zarr import plane_pixels

        size = plane_pixels(path)
        return size is not None and size[0] * size[1] > threshold
    if path.suffix.lower() not in (".tif", ".tiff"):
        return False
    try:
        with tiff_warnings(), tifffile.TiffFile(path) as tif:  # the read reports what is wrong, once
            shape = tif.series[0].shape
    except Exception:
        return False  # let the normal reader report what is wrong with it
    return len(shape) == 2 and shape[0] * shape[1] > threshold


def plate_outcome(path: Path, out: Path, segmenter: Segmenter, options: RunOptions,
                  progress: Progress | None = None) -> FileOutcome:
    """Banded processing of one large plate: tiled BigTIFF labels and its summary row."""
    start = time.perf_counter()
    name = output_name(input_stem(path), "labels")
    if segmenter.settings.diameter.pixels is not None:
        return FileOutcome.failed(path, "--diameter cannot rescale a plate this large (it is segmented in bands at its "
                                        "own size); resize it, or leave --diameter out")
    try:
        result = segment_plate(path, out / name, segmenter, options, progress=progress)
    except (ImageReadError, ImageValueError, OSError) as exc:
        return FileOutcome.failed(path, getattr(exc, "cause", None) or str(exc))
    if options.zarr_labels and (error := _zarr_labels_from_tiff(path, out / name, options)) is not None:
        return FileOutcome.failed(path, error)
    row = SummaryRow.measured(path, 0, result.metrics, time.perf_counter() - start,
                              (result.pixel_size_um, result.pixel_size_source))
    skipped = [KINDS[extra].option for extra in options.extras]
    unwritten = [f"{' and '.join(skipped)} not written: a plate this large is segmented in bands, and only its "
                 "labels and summary row are kept (crop it into tiles for per-cell outputs)"] if skipped else []
    return FileOutcome(path, [row], outputs=[name], warnings=result.warnings + unwritten)


def _zarr_labels_from_tiff(path: Path, labels_tiff: Path, options: RunOptions) -> str | None:
    """The banded path's labels, read back lazily from their tiled TIFF, into the OME-Zarr input."""
    import tifffile
    import zarr

    with tifffile.imread(labels_tiff, aszarr=True) as store:
        return zarr_labels(path, zarr.open(store, mode="r"), options)
