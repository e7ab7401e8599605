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
from ..runtime.atomic import write_bytes_atomic
from ..runtime.io import MAX_PIXELS, ImageStack, read_image
from ..runtime.segmenter import Result, Segmenter
from .image_files import label_image, overlay_image, write_png
from .outputs import KINDS, output_name
from .patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN, compile_time_pattern, compile_well_pattern
from .summary import SummaryRow, frame_rows
from .zarr_inputs import input_stem

Progress = Callable[[int, int], None]  # (done, total) work units of a long single input (plate tiles)


@dataclass
class FileOutcome:
    """What happened to one input file: one summary row per frame, or one failed row."""

    path: Path
    rows: list[SummaryRow] = field(default_factory=list)
    skipped: bool = False
    outputs: list[str] = field(default_factory=list)  # file names written in the output folder
    warnings: list[str] = field(default_factory=list)  # reader remarks on a file that was still usable

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @classmethod
    def failed(cls, path: Path, error: str) -> FileOutcome:
        return cls(path, [SummaryRow.failed(path, 0, error)])


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
    failed = [SummaryRow.failed(stack.path, f, r.error) for f, r in enumerate(results) if not r.ok]
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


def write_file_outputs(out: Path, stem: str, results: list[Result], pixel_size_um: float | None,
                       extras: tuple[str, ...] = ()) -> list[str]:
    """Labels, overlays and cells CSV of one input's frames, plus the optional `extras` (distance,
    rois, geojson); returns the names written."""
    def document(kind: str) -> str:
        name = output_name(stem, kind)
        write_bytes_atomic(out / name, KINDS[kind].render(results, pixel_size_um))
        return name

    written = [document("labels")]
    stack = len(results) > 1
    for index, result in enumerate(results):
        name = output_name(stem, "overlay", index if stack else None)
        write_png(out / name, overlay_image(result.image_u8, result.labels))
        written.append(name)
    return written + [document(kind) for kind in ("cells", *extras)]


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
