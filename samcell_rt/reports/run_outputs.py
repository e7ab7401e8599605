"""Per-run outputs derived from the summary rows after each run: timelines and plate maps.

They are computed from the summary rows (not from in-memory results), so a resumed run, whose
skipped inputs only have their manifest rows, gets exactly the same timelines and plate maps.
PNGs need matplotlib (extra `report`); the CSV tables are written without it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputError
from ..runs.outputs import PLATE_METRICS, PLATE_TABLE
from ..runs.summary import SummaryRow
from ..runtime.atomic import write_bytes_atomic, write_text_atomic
from . import plots
from .timeline import file_stems, series_fit, series_from_rows, timeline_csv
from .wells import plate_grid, plate_wells, wells_csv


def write_run_outputs(out: Path, rows: list[SummaryRow], time_pattern: str, well_pattern: str) -> list[str]:
    """`<series>_timeline.csv/.png` per time series and `plate_*.png` + `plate_wells.csv` for a plate;
    returns the names written. A folder that cannot take them (a full disk) is one OutputError."""
    try:
        return _timelines(out, rows, time_pattern) + _plate(out, rows, well_pattern, time_pattern)
    except OSError as exc:
        raise OutputError(f"cannot write timelines or plate maps in {out} ({exc.strerror or exc})") from None


def _timelines(out: Path, rows: list[SummaryRow], time_pattern: str) -> list[str]:
    written, found = [], series_from_rows(rows, time_pattern)
    for series, stem in zip(found, file_stems(found)):
        fit = series_fit(series)
        write_text_atomic(out / f"{stem}_timeline.csv", timeline_csv(series, fit))
        written.append(f"{stem}_timeline.csv")
        if plots.available():
            write_bytes_atomic(out / f"{stem}_timeline.png", plots.timeline_png(series, fit))
            written.append(f"{stem}_timeline.png")
    return written


def _plate(out: Path, rows: list[SummaryRow], well_pattern: str, time_pattern: str) -> list[str]:
    wells = plate_wells(rows, well_pattern, time_pattern)
    if not wells:
        return []
    write_text_atomic(out / PLATE_TABLE, wells_csv(wells))
    written = [PLATE_TABLE]
    for metric in PLATE_METRICS if plots.available() else ():
        write_bytes_atomic(out / f"plate_{metric}.png", plots.plate_png(plate_grid(wells, metric), metric))
        written.append(f"plate_{metric}.png")
    return written
