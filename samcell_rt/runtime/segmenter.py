"""Orchestration: images -> tiles -> batched engine calls -> blended maps -> labels.

Tiles from consecutive images share engine batches, so a folder of small images keeps the
engine as busy as one large image. Results come back in input order, each image as soon as its
last tile is done, so memory holds only the images still in flight.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ImageValueError, InputError, InputFileError
from . import MAX_PIXELS
from .contract import check_output
from .engines import open_engine
from .engines.base import Engine
from .engines.table import Precision
from .measure import cell_table, image_metrics
from .postprocess import labels_from_distance
from .preprocess import Scaling, enhance_tiles, to_uint8
from .quality import MapFacts, quality_warnings
from .scale import (
    AUTO_MIN_CELLS,
    AUTO_MIN_TILES,
    AUTO_PASSES,
    MIN_GAIN,
    Diameter,
    estimate_basis,
    estimate_diameter,
    map_misfit,
    next_scale,
    resized,
    scale_for,
    scaled_shape,
)
from .tiling import TileGrid, blend, extract_tiles, tile_grid, whole_in_a_tile

STAGES = ("preprocess", "engine", "blend", "postprocess", "measure")


@dataclass
class Result:
    """The segmentation of one 2-D image.

    `labels` int32 (0 background, 1..N cells); `distance` float32 in [0, 1]; `image_u8` the image
    as scaled for the model (for overlays); `metrics` per-image numbers; `cells` per-cell columns
    (pixel units, mean intensity on the original image); `timings` seconds per stage. When
    `error` is set (only with on_error="report"), the arrays are empty. `diameter` is the estimated
    cell diameter in the image's pixels (None without cells); `scale` the resize the image had
    before the model (1: none), with labels and maps always at the image's own size.
    """

    key: Hashable
    labels: np.ndarray
    distance: np.ndarray
    image_u8: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # reasons not to trust the result (runtime/quality.py)
    diameter: float | None = None
    scale: float = 1.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, key: Hashable, message: str) -> Result:
        """The result of an image that could not be segmented: empty arrays and the reason."""
        empty = np.zeros((0, 0), dtype=np.int32)
        return cls(key, empty, empty.astype(np.float32), empty.astype(np.uint8), error=message)


@dataclass
class _TiledImage:
    """One image on its way through the engine: its tiles, the maps filled in batch by batch, and its timings."""

    key: Hashable
    image: np.ndarray
    image_u8: np.ndarray
    grid: TileGrid
    tiles: np.ndarray
    maps: np.ndarray
    scale: float = 1.0
    done: int = 0
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


@dataclass(frozen=True)
class SegmentSettings:
    """How a `Segmenter` segments, apart from its model and engine; each field is also a keyword of
    `Segmenter`, `load_model` and `segment`. None: the engine's batch (batch_size), the model's
    thresholds (peak, fill), all CPU threads. `diameter` takes a `Diameter` or what `Diameter.parse`
    reads (a number of pixels, "auto", "off"), and holds the parsed `Diameter`."""

    batch_size: int | None = None
    peak: float | None = None
    fill: float | None = None
    threads: int | None = None
    scaling: Scaling = "range"
    diameter: Diameter = Diameter()

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("batch_size must be at least 1")
        object.__setattr__(self, "diameter", Diameter.parse(self.diameter))


class Segmenter:
    """A loaded model plus thresholds; `segment` and `segment_many` may be called from many threads.

    `model` is an ONNX or engine file, or an engine already open. Model names (the shipped
    default, downloaded models) are resolved by `samcell_rt.load_model`, not here: the runtime
    knows nothing of registries. How to segment is `settings`, or its fields as keywords
    (`Segmenter(path, diameter=40)`); `diameter` is the cells' expected diameter in pixels (each image is
    resized so they reach the model at its trained size), "auto" (segment as is, then step towards the
    model's size while the map grows more confident: `scale`) or "off" (never rescale).
    """

    def __init__(self, model: str | Path | Engine, engine: str = "cpu", settings: SegmentSettings | None = None,
                 **options: Any) -> None:
        if settings is not None and options:
            raise TypeError(f"give settings or keyword options ({', '.join(options)}), not both")
        settings = settings or SegmentSettings(**options)
        self.settings = settings
        self.threads, self.scaling = settings.threads, settings.scaling
        self.engine = open_engine(model, engine, settings.threads) if isinstance(model, (str, Path)) else model
        self.info = self.engine.info
        batch_size = settings.batch_size or self.engine.default_batch
        self.batch_size = min(batch_size, self.engine.max_batch or batch_size)
        self.peak = self.info.peak_threshold if settings.peak is None else settings.peak
        self.fill = self.info.fill_threshold if settings.fill is None else settings.fill
        for name, value in (("peak", self.peak), ("fill", self.fill)):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} threshold {value} must lie in [0, 1]")
        self._fixed_scale = self._scale_for_diameter(settings.diameter.pixels)

    def _scale_for_diameter(self, pixels: float | None) -> float | None:
        if pixels is None:
            return None
        if self.info.diameter is None:
            raise InputError(f"model {self.info.name} does not say what cell size it was trained on, so it cannot be "
                             "rescaled for --diameter; leave --diameter out, or resize the images yourself")
        return scale_for(pixels, self.info.diameter)

    @property
    def diameter(self) -> float | str:
        """The diameter asked for as run records store it: pixels, "auto" or "off"."""
        return self.settings.diameter.value

    @property
    def model_sha256(self) -> str:
        """sha256 of the model file, hashed once per process (shared with the engines' caches and the
        shipped-file check): identifies outputs made with this model."""
        from .contract import model_sha256

        return model_sha256(self.info.path)

    @property
    def engine_name(self) -> str:
        """The engine actually running the model (after `auto` was resolved)."""
        return self.engine.name

    @property
    def engine_precision(self) -> str:
        """What the engine computes in (fp32, bf16, fp16, int8): `auto` and the bf16 guard decide it."""
        return getattr(self.engine, "precision", Precision.FP32)

    def segment(self, image: np.ndarray) -> Result:
        """Segment one 2-D image of any numeric dtype; raise on bad input."""
        return next(self.segment_many([image]))

    def segment_many(self, images: Iterable[np.ndarray | tuple[Hashable, np.ndarray]],
                     on_error: Literal["raise", "report"] = "raise", pipeline: bool | None = None) -> Iterator[Result]:
        """Segment many 2-D images, sharing engine batches across them; yield results in order.

        Items are arrays or (key, array) pairs; a result's `key` is the pair's key or the item's
        index. With on_error="report" a bad image yields a Result with `error` set and the rest
        still run; with "raise" the first bad image raises. A broken model (ModelError) always
        raises. With `pipeline` (default: the engine table's choice, on for GPU engines) the next
        images are prepared and finished images post-processed on helper threads while the engine
        runs, so the engine waits as little as possible.
        """
        pipeline = self.engine.pipelined if pipeline is None else pipeline
        prepared = self._prepared(images)
        with ThreadPoolExecutor(1, thread_name_prefix="samcell-finish") if pipeline else _Inline() as finisher:
            pending: deque[_TiledImage] = deque()
            finished: deque[Future] = deque()
            for item in _prefetch(prepared, depth=2) if pipeline else prepared:
                if isinstance(item, _Failure):
                    if on_error == "raise":
                        raise item.error
                    self._run_batches(pending, finished, finisher, final=True)
                    finished.append(_completed(Result.failed(item.key, str(item.error))))
                else:
                    pending.append(item)
                    self._run_batches(pending, finished, finisher, final=False)
                while finished and (finished[0].done() or len(finished) > 4):
                    yield finished.popleft().result()
            self._run_batches(pending, finished, finisher, final=True)
            while finished:
                yield finished.popleft().result()

    def run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Distance maps (N, T, T) for enhanced uint8 tiles (N, T, T), in engine batches of `batch_size`.

        For callers that tile on their own (the banded plate path): same batching and output checks.
        """
        return np.concatenate([self._engine_run(tiles[i : i + self.batch_size])
                               for i in range(0, len(tiles), self.batch_size)])

    def _engine_run(self, tiles: np.ndarray) -> np.ndarray:
        batch = tiles[:, None]
        maps = self.engine.run(batch)
        check_output(self.info.path, batch, maps)
        return maps[:, 0]

    def _prepared(self, images: Iterable) -> Iterator[_TiledImage | _Failure]:
        for index, item in enumerate(images):
            key, image = item if isinstance(item, tuple) else (index, item)
            try:
                yield self._prepare(key, image)
            except InputFileError as exc:  # any other error is not the image's fault: it stops the run
                yield _Failure(key, exc)

    def _prepare(self, key: Hashable, image: np.ndarray) -> _TiledImage:
        start = time.perf_counter()
        image = np.asarray(image)
        if image.ndim != 2:
            raise ImageValueError(f"expected a 2-D gray image, got shape {image.shape}")
        if image.size == 0:
            raise ImageValueError(f"image has no pixels (shape {image.shape})")
        image_u8 = to_uint8(image, self.scaling)
        scale = self._fixed_scale or 1.0
        grid, tiles = self._tiles(image_u8, scale)
        job = _TiledImage(key, image, image_u8, grid, tiles, np.empty(tiles.shape, dtype=np.float32), scale)
        job.timings["preprocess"] = time.perf_counter() - start
        return job

    def _tiles(self, image_u8: np.ndarray, scale: float) -> tuple[TileGrid, np.ndarray]:
        """The tile grid and enhanced tiles of the image as the model sees it (resized by `scale`)."""
        shape = scaled_shape(image_u8.shape, scale)
        if shape[0] * shape[1] > MAX_PIXELS:
            raise ImageValueError(f"resizing by {scale:.3g}x for --diameter gives {shape[0]}x{shape[1]} pixels, "
                                  f"more than the {MAX_PIXELS:,} allowed")
        model_u8 = resized(image_u8, shape)
        grid = tile_grid(*model_u8.shape, tile=self.info.tile)
        return grid, enhance_tiles(extract_tiles(model_u8, grid))

    def _run_batches(self, pending: deque[_TiledImage], finished: deque[Future], finisher, final: bool) -> None:
        """Run full batches (and, when `final`, the last partial one); hand finished jobs on."""
        while pending and (final or self._queued_tiles(pending) >= self.batch_size):
            self._run_batch(pending)
            while pending and pending[0].done == len(pending[0].grid):
                finished.append(finisher.submit(self._finish, pending.popleft()))

    @staticmethod
    def _queued_tiles(pending: deque[_TiledImage]) -> int:
        return sum(len(job.grid) - job.done for job in pending)

    def _run_batch(self, pending: deque[_TiledImage]) -> None:
        parts, batch = [], []
        for job in pending:
            take = min(len(job.grid) - job.done, self.batch_size - len(batch))
            if take <= 0:
                continue
            parts.append((job, job.done, take))
            batch.extend(job.tiles[job.done : job.done + take])
            if len(batch) == self.batch_size:
                break
        start = time.perf_counter()
        maps = self._engine_run(np.stack(batch))
        elapsed = time.perf_counter() - start
        offset = 0
        for job, first, take in parts:
            job.maps[first : first + take] = maps[offset : offset + take]
            job.done += take
            job.timings["engine"] += elapsed * take / len(batch)
            offset += take

    def _finish(self, job: _TiledImage) -> Result:
        start = time.perf_counter()
        distance = resized(blend(job.maps, job.grid), job.image.shape)
        job.timings["blend"] = time.perf_counter() - start
        result = self._result(job.key, job.image, job.image_u8, distance, job.timings, job.scale)
        if self.settings.diameter.auto and self.info.diameter:
            result = self._auto_sized(job, result)
        return self._judged(result, self.peak, self.fill)

    def _auto_sized(self, job: _TiledImage, result: Result) -> Result:
        """diameter="auto": step the image's scale towards the model's typical cell size (`scale.next_scale`)
        while each step's map is more confident (`scale.map_misfit`, on the map as the model made it, before
        it is resized to the image: tiny cells' ideal maps are too coarse at the image's own size); a result
        whose cells lie outside the trained range takes its step even so, unless the step finds nothing.
        Steps run at most the first pass's tiles in all (AUTO_MIN_TILES for small images), and a first
        pass with too few cells is kept: both are said in the result's warnings. Returns the last result kept,
        not yet judged (`_judged` runs once, on it)."""
        low, high = self.info.diameter_range or (0.0, float("inf"))
        largest = float(np.sqrt(MAX_PIXELS / job.image.size))
        if result.diameter and (basis := estimate_basis(result.cells["touches_border"])) < AUTO_MIN_CELLS:
            result.warnings.append(f"--diameter auto cannot tell the cell size from {basis} cell(s) found at the "
                                   "image's own size; kept that size (pass --diameter with the cells' diameter in "
                                   "pixels)")
            return result
        budget = max(len(job.grid), AUTO_MIN_TILES)  # tiles the extra passes may run: twice the one-pass time
        misfit = None  # of the first pass (scale 1: the model's map is the result's), computed when first needed
        for _ in range(AUTO_PASSES - 1):
            scale = next_scale(result.diameter, result.scale, self.info.diameter, largest)
            if scale is None:
                break
            needed = len(tile_grid(*scaled_shape(job.image.shape, scale), tile=self.info.tile))
            if needed > budget:
                result.warnings.append(f"--diameter auto did not try {scale:.2g}x: its {needed} tiles exceed the "
                                       f"{budget} left of its time bound (twice one pass); pass --diameter with the "
                                       "cells' diameter in pixels to segment at that size")
                break
            budget -= needed
            misfit = map_misfit(result.distance, result.labels, self.fill) if misfit is None else misfit
            start = time.perf_counter()
            grid, tiles = self._tiles(job.image_u8, scale)
            model_map = blend(self.run_tiles(tiles), grid)
            job.timings["engine"] += time.perf_counter() - start
            candidate_misfit = map_misfit(model_map, labels_from_distance(model_map, self.peak, self.fill), self.fill)
            outside = not low <= result.diameter * result.scale <= high
            if not np.isfinite(candidate_misfit) or (candidate_misfit > MIN_GAIN * misfit and not outside):
                break  # a step that found nothing is never kept
            distance = resized(model_map, job.image.shape)
            result = self._result(job.key, job.image, job.image_u8, distance, job.timings, scale)
            misfit = candidate_misfit
        return result

    def _result(self, key: Hashable, image: np.ndarray | None, image_u8: np.ndarray, distance: np.ndarray,
                timings: dict[str, float], scale: float, thresholds: tuple[float, float] | None = None) -> Result:
        """Labels, measurements and the diameter estimate of one distance map at `thresholds` (peak, fill;
        default the segmenter's); its quality flags come after (`_judged`), on the result kept only."""
        peak, fill = thresholds or (self.peak, self.fill)
        start = time.perf_counter()
        labels = labels_from_distance(distance, peak, fill)
        timings["postprocess"] = (t2 := time.perf_counter()) - start
        cells = cell_table(labels, image)
        metrics = image_metrics(labels, cells)
        diameter = estimate_diameter(cells["area"], cells["touches_border"])
        timings["measure"] = time.perf_counter() - t2
        return Result(key, labels, distance, image_u8, metrics, cells, timings, diameter=diameter, scale=scale)

    def _judged(self, result: Result, peak: float, fill: float) -> Result:
        """`result` with its quality flags (runtime/quality.py) ahead of any warnings it already has,
        from the facts of its map gathered once; their time counts as measuring."""
        start = time.perf_counter()
        grid = tile_grid(*scaled_shape(result.distance.shape, result.scale), tile=self.info.tile)
        facts = MapFacts(result.distance, peak, result.cells["touches_border"],
                         whole_in_a_tile(result.labels, grid, result.scale), result.diameter, result.scale,
                         result.labels, fill, result.image_u8)
        result.warnings[:0] = quality_warnings(facts, self.info.diameter_range)
        result.timings["measure"] += time.perf_counter() - start
        return result

    def relabel(self, result: Result, peak: float | None = None, fill: float | None = None,
                intensity: np.ndarray | None = None) -> Result:
        """Re-run only the post-processing of `result` with other thresholds (no engine call)."""
        thresholds = (self.peak if peak is None else peak, self.fill if fill is None else fill)
        again = self._result(result.key, intensity, result.image_u8, result.distance, dict(result.timings),
                             result.scale, thresholds)
        return self._judged(again, *thresholds)


@dataclass
class _Failure:
    key: Hashable
    error: Exception


class _Inline:
    """Executor stand-in that runs work immediately (no pipelining)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


def _completed(result: Result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _prefetch(items: Iterator, depth: int) -> Iterator:
    """Run `items` on a helper thread, `depth` ahead of the consumer; re-raise its errors here."""
    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(_Raised(exc))

    thread = threading.Thread(target=produce, name="samcell-prepare", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()


@dataclass
class _Raised:
    error: BaseException
