"""Segment many files into an output folder: per-file outputs, `summary.csv` and a resume manifest.

A bad file is reported (summary row + callback) and the rest still run; a broken model stops the
run (it would fail every file) after writing the summary of what was done. Before any work the
output folder is checked: it must be writable, no other run may be using it, and no input may
write over another input's outputs. The tool's own outputs are never taken as inputs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import InputError, OutputError
from ..runtime.atomic import stale_parts
from ..runtime.io import is_image_file
from ..runtime.segmenter import Segmenter
from ..version import __version__
from .dask import segment_files_on_cluster
from .files import FileOutcome, Progress, RunOptions, stream_files
from .manifest import Manifest, recorded_outputs
from .outputs import is_output_name, stack_of_frame_stem
from .patterns import check_names, compile_time_pattern, compile_well_pattern
from .plates import is_plate, plate_outcome
from .run_info import write_run_info
from .summary import SUMMARY, write_summary
from .zarr_inputs import expand_store, input_stem, is_store
from .zarr_labels import check_targets

LOCK = ".samcell-rt.lock"


def expand_inputs(inputs: Iterable[str], out: Path | None = None) -> list[Path]:
    """Files, folders (their image files and OME-Zarr stores, sorted) and glob patterns -> a list of
    inputs; an OME-Zarr HCS plate gives one input per well field.

    samcell-rt's own outputs are skipped: those a manifest records in their folder, and anything
    named like an output in `out`, so an output folder equal to an input folder is safe to run
    twice. Two inputs whose outputs would share names are refused.
    """
    files: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if is_store(path):
            files.extend(expand_store(path))
        elif path.is_dir():
            own = recorded_outputs(path)
            for item in sorted(path.iterdir()):
                if is_store(item):
                    files.extend(expand_store(item))
                elif item.is_file() and is_image_file(item) and item.name not in own:
                    files.append(item)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(entry):
            matches = sorted(Path(p) for p in glob.glob(entry) if Path(p).is_file() or is_store(Path(p)))
            if not matches:
                raise InputError(f"no files match {entry!r}")
            files.extend(p for match in matches for p in (expand_store(match) if match.is_dir() else [match]))
        else:
            raise InputError(f"input {entry!r} does not exist")
    if out is not None:
        files = [f for f in files if not _is_own_output(f, out)]
    if not files:
        raise InputError("no image files found in the inputs")
    files = list(dict.fromkeys(files))
    stems: dict[str, Path] = {}
    for file in files:
        stem = input_stem(file)
        if stem in stems:
            raise InputError(f"{stems[stem]} and {file} would write the same outputs (same name stem {stem!r}); "
                             "run them into different --out folders or rename one")
        stems[stem] = file
    for file in files:
        stem = input_stem(file)
        if (stack := stack_of_frame_stem(stem)) in stems:
            raise InputError(f"{stems[stack]} (if it is a stack: its frames' overlays {stack}_fNNNN_overlay.png) and "
                             f"{file} would write the same {stem}_overlay.png; run them into different --out "
                             "folders or rename one")
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
    options = options or RunOptions()
    check_names((input_stem(path) for path in files), compile_time_pattern(options.time_pattern),
                compile_well_pattern(options.well_pattern))  # a pattern that hangs fails before any work
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
            if options.zarr_labels:  # before any work: never replace labels unasked, nor fail late
                check_targets([files[i] for i in todo], options.zarr_labels, options.replace_zarr_labels)
            for i, outcome in _run(files, todo, out, segmenter, options, progress, client):
                finished(i, outcome)
        finally:
            write_summary(out / SUMMARY, [row for i in sorted(outcomes) for row in outcomes[i].rows])
        _write_run_info(out, [outcomes[i] for i in sorted(outcomes)], segmenter, options)
    return [outcomes[i] for i in sorted(outcomes)]


def _write_run_info(out: Path, outcomes: list[FileOutcome], segmenter: Segmenter, options: RunOptions) -> None:
    """run.json: settings, model and reader warnings."""
    info = {"samcell_rt": __version__, "model": {"name": segmenter.info.name, "version": segmenter.info.version,
                                             "sha256": segmenter.model_sha256},
            "engine": segmenter.engine_name, "precision": segmenter.engine_precision,
            "params": options.params(segmenter), "files": len(outcomes),
            "time_pattern": options.time_pattern, "well_pattern": options.well_pattern}
    try:
        write_run_info(out, info, {str(o.path): o.warnings for o in outcomes if not o.skipped})
    except OSError as exc:
        raise OutputError(f"cannot write run.json in {out} ({exc.strerror or exc})") from None


def _run(files: list[Path], todo: list[int], out: Path, segmenter: Segmenter, options: RunOptions,
         progress: Progress | None, client) -> Iterator[tuple[int, FileOutcome]]:
    plates = [i for i in todo if is_plate(files[i], options.plate_pixels)]
    for i in plates:
        yield i, plate_outcome(files[i], out, segmenter, options, progress)
    rest = [i for i in todo if i not in plates]
    if client is not None:
        yield from zip(rest, segment_files_on_cluster(client, [files[i] for i in rest], out, segmenter, options))
    else:
        yield from stream_files([(i, files[i]) for i in rest], out, segmenter, options)
