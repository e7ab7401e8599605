"""Segment many files into an output folder: per-file outputs, `summary.csv` and a resume manifest.

A bad file is reported (summary row + callback) and the rest still run; a broken model stops the
run (it would fail every file) after writing the summary of what was done. Before any work the
output folder is checked: it must be writable, no other run may be using it, and no input may
write over another input's outputs. The tool's own outputs are never taken as inputs.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageReadError, ImageValueError, InputError, OutputError
from ..runtime.atomic import stale_parts
from ..runtime.io import MAX_PIXELS, ImageStack, is_image_file, read_image
from ..runtime.segmenter import Result, Segmenter
from .patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN, compile_time_pattern, compile_well_pattern
from .writers import SUMMARY, frame_rows, is_output_name, summary_row, write_file_outputs, write_summary

LOCK = ".samcell-rt.lock"
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

    def __post_init__(self) -> None:
        compile_time_pattern(self.time_pattern)  # a bad pattern is a usage error before any work
        compile_well_pattern(self.well_pattern)

    def params(self, segmenter: Segmenter) -> dict:
        return {"peak": segmenter.peak, "fill": segmenter.fill, "scaling": segmenter.scaling, "diameter": segmenter.diameter,
                "tile": segmenter.info.tile, "channel": self.channel, "pixel_size_um": self.pixel_size_um,
                "extras": sorted(self.extras)}

    def read(self, path: Path) -> ImageStack:
        stack = read_image(path, self.channel, self.max_pixels)
        if self.pixel_size_um:
            stack.pixel_size_um, stack.pixel_size_source = self.pixel_size_um, "option"
        return stack


def expand_inputs(inputs: Iterable[str], out: Path | None = None) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> a list of files.

    samcell-rt's own outputs are skipped: those a manifest records in their folder, and anything
    named like an output in `out`, so an output folder equal to an input folder is safe to run
    twice. Two inputs whose outputs would share names are refused.
    """
    from .manifest import recorded_outputs

    files: list[Path] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            own = recorded_outputs(path)
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p) and p.name not in own))
        elif path.exists():
            files.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not matches:
                raise InputError(f"no files match {spec!r}")
            files.extend(matches)
        else:
            raise InputError(f"input {spec!r} does not exist")
    if out is not None:
        files = [f for f in files if not _is_own_output(f, out)]
    if not files:
        raise InputError("no image files found in the inputs")
    files = list(dict.fromkeys(files))
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems:
            raise InputError(f"{stems[file.stem]} and {file} would write the same outputs (same name stem); "
                             "run them into different --out folders or rename one")
        stems[file.stem] = file
    return files


def _is_own_output(path: Path, out: Path) -> bool:
    return is_output_name(path.name) and path.parent.resolve() == out.resolve()


def prepare_output(out: Path) -> None:
    """Create `out` and prove it writable; remove temporary files a killed run left there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".samcell-rt-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output folder {out} cannot be written ({exc.strerror or exc})") from exc
    for part in stale_parts(out):
        part.unlink(missing_ok=True)


class FolderLock:
    """An exclusive lock on an output folder for one run (POSIX advisory lock; a no-op elsewhere)."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK
        self._handle = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:
            return self
        self._handle = open(self.path, "a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._handle.close()
            raise OutputError(f"output folder {self.path.parent} is in use by another samcell-rt run") from exc
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()


def segment_files(files: list[Path], out: Path, segmenter: Segmenter, options: RunOptions | None = None,
                  on_file: Callable[[FileOutcome], None] | None = None, progress: Progress | None = None,
                  client=None) -> list[FileOutcome]:
    """Segment every frame of every file, write outputs per file, `summary.csv` and the manifest.

    Files whose outputs exist from a run with the same model and parameters are skipped (their
    summary rows come from the manifest) unless `options.overwrite`. `progress` follows long
    single inputs (plates). With a Dask `client`, whole files go to the cluster's workers.
    """
    from .manifest import Manifest

    options = options or RunOptions()
    prepare_output(out)
    with FolderLock(out):
        manifest = Manifest(out, segmenter.model_sha256, options.params(segmenter))
        manifest.claim(files, take_over=options.overwrite)
        outcomes: dict[int, FileOutcome] = {}

        def finished(i: int, outcome: FileOutcome) -> None:
            outcomes[i] = outcome
            if outcome.ok and not outcome.skipped:
                manifest.record(outcome.path, outcome.rows, outcome.outputs)
            if on_file is not None:
                on_file(outcome)

        try:
            todo = []
            for i, path in enumerate(files):
                rows = None if options.overwrite else manifest.done_rows(path)
                if rows is None:
                    todo.append(i)
                else:
                    finished(i, FileOutcome(path, rows, skipped=True))
            for i, outcome in _run(files, todo, out, segmenter, options, progress, client):
                finished(i, outcome)
        finally:
            write_summary(out / SUMMARY, [row for i in sorted(outcomes) for row in outcomes[i].rows])
        _write_run_outputs(out, [outcomes[i] for i in sorted(outcomes)], segmenter, options)
    return [outcomes[i] for i in sorted(outcomes)]


def _write_run_outputs(out: Path, outcomes: list[FileOutcome], segmenter: Segmenter, options: RunOptions) -> None:
    """run.json (settings, model, reader warnings), then timelines and plate maps from the summary rows."""
    from importlib.metadata import PackageNotFoundError, version

    from .run_outputs import write_run_info, write_run_outputs

    try:
        package = version("samcell-rt")
    except PackageNotFoundError:
        package = ""
    info = {"samcell_rt": package, "model": {"name": segmenter.info.name, "version": segmenter.info.version,
                                             "sha256": segmenter.model_sha256},
            "engine": segmenter.engine_name, "precision": segmenter.engine_precision,
            "params": options.params(segmenter), "files": len(outcomes),
            "time_pattern": options.time_pattern, "well_pattern": options.well_pattern}
    write_run_info(out, info, {str(o.path): o.warnings for o in outcomes if not o.skipped})
    write_run_outputs(out, [row for o in outcomes for row in o.rows], options.time_pattern, options.well_pattern)


def _run(files: list[Path], todo: list[int], out: Path, segmenter: Segmenter, options: RunOptions,
         progress: Progress | None, client) -> Iterator[tuple[int, FileOutcome]]:
    from .plates import is_plate

    plates = [i for i in todo if is_plate(files[i], options.plate_pixels)]
    for i in plates:
        yield i, plate_outcome(files[i], out, segmenter, options, progress)
    rest = [i for i in todo if i not in plates]
    if client is not None:
        from .dask import segment_files_on_cluster

        yield from zip(rest, segment_files_on_cluster(client, [files[i] for i in rest], out, segmenter, options))
    else:
        yield from stream_files([(i, files[i]) for i in rest], out, segmenter, options)


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
            yield i, _file_outcome(stacks.pop(i), frames_done.pop(i), out, read_seconds[i], options.extras)
    while failures:
        yield failures.pop(0)


def _file_outcome(stack: ImageStack, results: list[Result], out: Path, read_seconds: float,
                  extras: tuple[str, ...]) -> FileOutcome:
    failed = [summary_row(stack.path, f, error=r.error) for f, r in enumerate(results) if not r.ok]
    if failed:
        return FileOutcome(stack.path, failed)  # never write a label stack with holes in it
    try:
        outputs = write_file_outputs(out, stack.path.stem, results, stack.pixel_size_um, extras)
    except OSError as exc:
        return FileOutcome.failed(stack.path, f"cannot write outputs ({exc.strerror or exc})")
    rows = frame_rows(stack, results, read_seconds)
    return FileOutcome(stack.path, rows, outputs=outputs, warnings=stack.warnings)


def plate_outcome(path: Path, out: Path, segmenter: Segmenter, options: RunOptions,
                  progress: Progress | None = None) -> FileOutcome:
    """Banded processing of one large plate: tiled BigTIFF labels and its summary row."""
    from .plates import segment_plate
    from .writers import output_name

    start = time.perf_counter()
    name = output_name(path.stem, "labels")
    if not isinstance(segmenter.diameter, str):
        return FileOutcome.failed(path, "--diameter cannot rescale a plate this large (it is segmented in bands at its "
                                        "own size); resize it, or leave --diameter out")
    try:
        result = segment_plate(path, out / name, segmenter, options, progress=progress)
    except (ImageReadError, ImageValueError, OSError) as exc:
        return FileOutcome.failed(path, getattr(exc, "cause", None) or str(exc))
    row = summary_row(path, 0, result.metrics, time.perf_counter() - start, None, result.pixel_size_um,
                      result.pixel_size_source)
    return FileOutcome(path, [row], outputs=[name])
