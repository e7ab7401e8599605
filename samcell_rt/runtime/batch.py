"""Segment many files into an output folder: labels, overlays and one summary.csv.

A bad file is reported (summary row + callback) and the rest still run. Every output is written
atomically, so an interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import csv
import glob
import io as _io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SamcellError
from .atomic import write_text_atomic
from .io import ImageStack, is_image_file, overlay_image, read_image, write_float_tiff, write_labels, write_png
from .measure import image_metrics, with_physical_units
from .plate import PLATE_PIXELS, is_plate
from .segmenter import Result, Segmenter

SUMMARY_FIELDS = ("file", "frame", "cells", "mean_area_px", "median_area_px", "confluency", "mean_neighbours",
                  "mean_area_um2", "seconds", "status", "error")


class InputError(ValueError):
    """The command line named inputs that do not exist or that collide in the output folder."""


@dataclass
class FileOutcome:
    """What happened to one input file: one summary row per frame, or one failed row."""

    path: Path
    rows: list[dict] = field(default_factory=list)
    skipped: bool = False
    outputs: list[str] = field(default_factory=list)  # file names written in the output folder

    @property
    def ok(self) -> bool:
        return all(row["status"] == "ok" for row in self.rows)


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> a list of files."""
    files: list[Path] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p)))
        elif path.exists():
            files.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not matches:
                raise InputError(f"no files match {spec!r}")
            files.extend(matches)
        else:
            raise InputError(f"input {spec!r} does not exist")
    if not files:
        raise InputError("no image files found in the inputs")
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems and stems[file.stem] != file:
            raise InputError(f"{stems[file.stem]} and {file} would write the same outputs (same name stem)")
        stems[file.stem] = file
    return list(dict.fromkeys(files))


@dataclass
class RunOptions:
    """Per-run choices that shape the outputs (recorded in the manifest)."""

    channel: int | None = None
    pixel_size_um: float | None = None
    save_distance: bool = False
    overwrite: bool = False
    plate_pixels: int = PLATE_PIXELS  # larger single-plane TIFFs take the banded, bounded-memory path

    def params(self, segmenter: Segmenter) -> dict:
        return {"peak": segmenter.peak, "fill": segmenter.fill, "scaling": segmenter.scaling,
                "tile": segmenter.info.tile, "channel": self.channel, "pixel_size_um": self.pixel_size_um,
                "save_distance": self.save_distance}


def segment_files(files: list[Path], out: Path, segmenter: Segmenter, options: RunOptions | None = None,
                  on_file: Callable[[FileOutcome], None] | None = None, client=None) -> list[FileOutcome]:
    """Segment every frame of every file, write outputs per file, `summary.csv` and the manifest.

    Files whose outputs exist from a run with the same model and parameters are skipped (their
    summary rows come from the manifest) unless `options.overwrite`. With a Dask `client`, whole
    files go to the cluster's workers, each loading the model once.
    """
    from .manifest import Manifest

    options = options or RunOptions()
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out, segmenter.model_sha256, options.params(segmenter))
    outcomes: dict[int, FileOutcome] = {}
    todo = []
    for i, path in enumerate(files):
        rows = None if options.overwrite else manifest.done_rows(path)
        if rows is None:
            todo.append(i)
        else:
            outcomes[i] = FileOutcome(path, rows, skipped=True)
            _report(outcomes[i], on_file)

    def finished(i: int, outcome: FileOutcome) -> None:
        outcomes[i] = outcome
        if outcome.ok:
            manifest.record(outcome.path, outcome.rows, outcome.outputs)
        _report(outcome, on_file)

    plates = [i for i in todo if is_plate(files[i], options.plate_pixels)]
    todo = [i for i in todo if i not in plates]
    for i in plates:
        finished(i, plate_outcome(files[i], out, segmenter))
    if client is not None:
        from .distributed import segment_files_on_cluster

        for i, outcome in zip(todo, segment_files_on_cluster(client, [files[i] for i in todo], out, segmenter, options)):
            finished(i, outcome)
    else:
        for i, outcome in stream_files([(i, files[i]) for i in todo], out, segmenter, options):
            finished(i, outcome)
    write_summary(out / "summary.csv", [row for i in sorted(outcomes) for row in outcomes[i].rows])
    return [outcomes[i] for i in sorted(outcomes)]


def stream_files(files: list[tuple[int, Path]], out: Path, segmenter: Segmenter,
                 options: RunOptions) -> Iterator[tuple[int, FileOutcome]]:
    """Segment files with engine batches shared across them; yield (index, outcome) as each finishes."""
    stacks: dict[int, ImageStack] = {}
    read_seconds: dict[int, float] = {}
    frames_done: dict[int, list[Result]] = {}
    failures: list[tuple[int, FileOutcome]] = []

    def frames() -> Iterator[tuple[tuple[int, int], np.ndarray]]:
        for i, path in files:
            start = time.perf_counter()
            try:
                stacks[i] = read_image(path, options.channel)
            except SamcellError as exc:
                failures.append((i, FileOutcome(path, [_row(path, 0, error=exc.cause)])))
                continue
            read_seconds[i] = time.perf_counter() - start
            frames_done[i] = []
            for f, frame in enumerate(stacks[i].frames):
                yield (i, f), frame

    for result in segmenter.segment_many(frames(), on_error="report"):
        while failures:
            yield failures.pop(0)
        i, f = result.key
        frames_done[i].append(result)
        if len(frames_done[i]) == stacks[i].frames.shape[0]:
            stack = stacks.pop(i)
            stack.pixel_size_um = options.pixel_size_um or stack.pixel_size_um
            outcome = FileOutcome(stack.path)
            _write_file_outputs(outcome, stack, frames_done.pop(i), out, read_seconds[i], options.save_distance)
            yield i, outcome
    while failures:
        yield failures.pop(0)


def plate_outcome(path: Path, out: Path, segmenter: Segmenter) -> FileOutcome:
    """Banded processing of one large plate: tiled BigTIFF labels and its summary row."""
    from .plate import segment_plate

    start = time.perf_counter()
    try:
        result = segment_plate(path, out / f"{path.stem}_labels.tif", segmenter)
    except (SamcellError, ValueError, OSError) as exc:
        return FileOutcome(path, [_row(path, 0, error=str(exc))])
    return FileOutcome(path, [_row(path, 0, result.metrics, seconds=time.perf_counter() - start)],
                       outputs=[f"{path.stem}_labels.tif"])


def _report(outcome: FileOutcome, on_file: Callable[[FileOutcome], None] | None) -> None:
    if on_file is not None:
        on_file(outcome)


def _write_file_outputs(outcome: FileOutcome, stack: ImageStack, results: list[Result], out: Path,
                        read_seconds: float, save_distance: bool) -> None:
    stem, path = stack.path.stem, stack.path
    failed = [r for r in results if not r.ok]
    for result in failed:
        outcome.rows.append(_row(path, result.key[1], error=result.error))
    if failed:
        return  # never write a label stack with holes in it
    try:
        labels = np.stack([r.labels for r in results]) if stack.is_stack else results[0].labels
        write_labels(out / f"{stem}_labels.tif", labels, stack.pixel_size_um)
        outcome.outputs.append(f"{stem}_labels.tif")
        for result in results:
            name = f"{stem}_f{result.key[1]:04d}_overlay.png" if stack.is_stack else f"{stem}_overlay.png"
            write_png(out / name, overlay_image(result.image_u8, result.labels))
            outcome.outputs.append(name)
        write_cells_csv(out / f"{stem}_cells.csv", results, stack.pixel_size_um)
        outcome.outputs.append(f"{stem}_cells.csv")
        if save_distance:
            write_float_tiff(out / f"{stem}_distance.tif", np.stack([r.distance for r in results]))
            outcome.outputs.append(f"{stem}_distance.tif")
    except OSError as exc:
        outcome.rows.append(_row(path, 0, error=f"cannot write outputs ({exc})"))
        return
    share = read_seconds / len(results)
    for result in results:
        metrics = image_metrics(result.labels, result.cells, stack.pixel_size_um)
        outcome.rows.append(_row(path, result.key[1], metrics, seconds=share + sum(result.timings.values())))


def _row(path: Path, frame: int, metrics: dict | None = None, seconds: float = 0.0, error: str | None = None) -> dict:
    row = {"file": str(path), "frame": frame, "status": "ok" if error is None else "failed", "error": error or ""}
    for name in ("cells", "mean_area_px", "median_area_px", "confluency", "mean_neighbours", "mean_area_um2"):
        value = (metrics or {}).get(name)
        row[name] = "" if value is None else value if name == "cells" else _fmt(value)
    row["seconds"] = _fmt(seconds) if metrics is not None else ""
    return row


def write_cells_csv(path: Path, results: list[Result], pixel_size_um: float | None) -> None:
    """One row per cell (and frame), atomically; physical-unit columns when the pixel size is known."""
    buffer = _io.StringIO()
    writer = None
    for result in results:
        table = with_physical_units(result.cells, pixel_size_um)
        if writer is None:
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["frame", *table])
        columns = [table[name] for name in table]
        for values in zip(*columns):
            writer.writerow([result.key[1], *(_cell(v) for v in values)])
    write_text_atomic(path, buffer.getvalue())


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return _fmt(float(value))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write the summary CSV atomically."""
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())
