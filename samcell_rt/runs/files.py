"""What one input file becomes: the run options, the per-file outcome and the streaming worker.

Shared by the folder driver (`folders`), the plate path (`plates`) and Dask workers (`dask`), so
each of them imports this module and none imports another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageReadError, SamcellError
from ..runtime.io import MAX_PIXELS, ImageStack, read_image
from ..runtime.segmenter import Result, Segmenter
from .patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN, compile_time_pattern, compile_well_pattern
from .writers import frame_rows, label_image, summary_row, write_file_outputs
from .zarr_inputs import input_stem

Progress = Callable[[int, int], None]  # (done, total) work units of a long single input (plate tiles)


@dataclass
class FileOutcome:
    """What happened to one input file: one summary row per frame, or one failed row."""

    path: Path
    rows: list[dict] = field(default_factory=list)
    skipped: bool = False
    outputs: list[str] = field(default_factory=list)  # file names written in the output folder
    warnings: list[str] = field(default_factory=list)  # reader remarks on a file that was still usable

    @property
    def ok(self) -> bool:
        return all(row["status"] == "ok" for row in self.rows)

    @classmethod
    def failed(cls, path: Path, error: str) -> FileOutcome:
        return cls(path, [summary_row(path, 0, error=error)])


@dataclass
class RunOptions:
    """Per-run choices that shape the outputs (those in `params` are recorded in the manifest)."""

    channel: int | None = None
    pixel_size_um: float | None = None
    extras: tuple[str, ...] = ()  # optional outputs beyond labels/overlay/cells: "distance", "rois", "geojson"
    overwrite: bool = False
    plate_pixels: int = 8192 * 8192  # larger single-plane TIFFs take the banded, bounded-memory path
    max_pixels: int = MAX_PIXELS  # larger headers are refused as lying or unmanageable
    time_pattern: str = DEFAULT_TIME_PATTERN  # file names carrying a time or frame index form a timeline
    well_pattern: str = DEFAULT_WELL_PATTERN  # file names carrying a well id form a plate map
    zarr_labels: str | None = None  # write labels into OME-Zarr inputs as NGFF labels of this name
    replace_zarr_labels: bool = False  # replace an existing labels group of that name
    scene: int | None = None  # only this CZI scene / LIF image / ND2 position of each container file

    def __post_init__(self) -> None:
        compile_time_pattern(self.time_pattern)  # a bad pattern is a usage error before any work
        compile_well_pattern(self.well_pattern)

    def params(self, segmenter: Segmenter) -> dict:
        params = {"peak": segmenter.peak, "fill": segmenter.fill, "scaling": segmenter.scaling,
                  "diameter": segmenter.diameter, "tile": segmenter.info.tile, "channel": self.channel,
                  "pixel_size_um": self.pixel_size_um, "extras": sorted(self.extras)}
        for name in ("scene", "zarr_labels"):  # only when set: earlier manifests stay valid for runs without them
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        return params

    def read(self, path: Path) -> ImageStack:
        stack = read_image(path, self.channel, self.max_pixels, self.scene)
        if self.pixel_size_um:
            stack.pixel_size_um, stack.pixel_size_source = self.pixel_size_um, "option"
        return stack


def stream_files(files: list[tuple[int, Path]], out: Path, segmenter: Segmenter,
                 options: RunOptions) -> Iterator[tuple[int, FileOutcome]]:
    """Segment files with engine batches shared across them; yield (index, outcome) as each finishes."""
    stacks: dict[int, ImageStack] = {}
    read_seconds: dict[int, float] = {}
    frames_done: dict[int, list[Result]] = {}
    failures: list[tuple[int, FileOutcome]] = []

    def frames() -> Iterator:
        for i, path in files:
            start = time.perf_counter()
            try:
                stacks[i] = options.read(path)
            except ImageReadError as exc:
                failures.append((i, FileOutcome.failed(path, exc.cause)))
                continue
            read_seconds[i] = time.perf_counter() - start
            frames_done[i] = []
            for f, frame in enumerate(stacks[i].frames):
                yield (i, f), frame

    for result in segmenter.segment_many(frames(), on_error="report"):
        while failures:
            yield failures.pop(0)
        i, _ = result.key
        frames_done[i].append(result)
        if len(frames_done[i]) == stacks[i].frames.shape[0]:
            yield i, _file_outcome(stacks.pop(i), frames_done.pop(i), out, read_seconds[i], options)
    while failures:
        yield failures.pop(0)


def _file_outcome(stack: ImageStack, results: list[Result], out: Path, read_seconds: float,
                  options: RunOptions) -> FileOutcome:
    failed = [summary_row(stack.path, f, error=r.error) for f, r in enumerate(results) if not r.ok]
    if failed:
        return FileOutcome(stack.path, failed)  # never write a label stack with holes in it
    try:
        outputs = write_file_outputs(out, input_stem(stack.path), results, stack.pixel_size_um, options.extras)
    except OSError as exc:
        return FileOutcome.failed(stack.path, f"cannot write outputs ({exc.strerror or exc})")
    if (error := zarr_labels(stack.path, label_image(results), options)) is not None:
        return FileOutcome.failed(stack.path, error)
    rows = frame_rows(stack, results, read_seconds)
    return FileOutcome(stack.path, rows, outputs=outputs, warnings=stack.warnings)


def zarr_labels(path: Path, labels, options: RunOptions) -> str | None:
    """Write labels into an OME-Zarr input when asked (--zarr-labels); the reason it failed, else None."""
    from .zarr_labels import is_zarr_input, write_labels

    if not options.zarr_labels or not is_zarr_input(path):
        return None
    try:
        write_labels(path, labels, options.zarr_labels, options.replace_zarr_labels)
    except (ValueError, OSError, SamcellError) as exc:
        return f"labels not written into the OME-Zarr image: {exc}"
    return None
