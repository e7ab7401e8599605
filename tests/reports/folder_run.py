"""A folder run as `samcell-rt segment` makes it: the batch driver, then the outputs derived from its rows."""

from __future__ import annotations

from pathlib import Path

from samcell_rt.reports.run_outputs import write_run_outputs
from samcell_rt.runs.files import FileOutcome
from samcell_rt.runs.folders import RunOptions, segment_files
from samcell_rt.runtime.segmenter import Segmenter


def segment_and_derive(files: list[Path], out: Path, segmenter: Segmenter,
                       options: RunOptions | None = None) -> list[FileOutcome]:
    """`segment_files`, then the timelines and plate maps of its summary rows."""
    options = options or RunOptions()
    outcomes = segment_files(files, out, segmenter, options)
    write_run_outputs(out, [row for o in outcomes for row in o.rows], options.time_pattern, options.well_pattern)
    return outcomes
