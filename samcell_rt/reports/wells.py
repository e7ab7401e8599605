"""Well ids in file names (A1..H12, A01..P24) and the per-well table of a plate.

Each well gets the numbers of its images at their latest time point (time column of a stack, or
the time in the file name), averaged when a well has several images (fields of view), so the plate
map shows the state at the end of an experiment and equals the summary for one image per well.
Plates are 96-well (8 x 12) unless a well lies beyond H or 12, then 384-well (16 x 24). Fields of an
OME-Zarr HCS plate take their well from the plate's layout, not from their names.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from ..runs.patterns import ROW_LETTERS, compile_time_pattern, compile_well_pattern, find_in_name
from ..runs.summary import SummaryRow
from ..runs.zarr_inputs import input_stem, layout_well
from .timeline import METRICS, mean_metrics, name_time


@dataclass
class Well:
    """One well's numbers (means over its images at their latest time) and the images they come from."""

    row: int  # 0 = A
    col: int  # 1-based
    metrics: dict
    files: list[str]

    @property
    def id(self) -> str:
        return f"{ROW_LETTERS[self.row]}{self.col:02d}"


def well_of(stem: str, pattern) -> tuple[int, int] | None:
    """(row index, column) of the well a file name names, or None (also for ids off a 384-well plate)."""
    for match in find_in_name(pattern, stem):
        letter, number = match.group("row").upper(), match.group("col")
        if letter in ROW_LETTERS and number.isdigit() and 1 <= int(number) <= 24:
            return ROW_LETTERS.index(letter), int(number)
    return None


def plate_wells(rows: list[SummaryRow], well_pattern: str, time_pattern: str) -> list[Well]:
    """Per-well numbers from summary rows; empty unless at least two wells are named."""
    wells, times = compile_well_pattern(well_pattern), compile_time_pattern(time_pattern)
    found: dict[tuple[int, int], list[tuple[float, SummaryRow]]] = {}
    for row in rows:
        stem = input_stem(row.file)
        position = (layout_well(row.file) or well_of(stem, wells)) if row.ok else None
        if position is not None:
            found.setdefault(position, []).append((_time(row, stem, times), row))
    if len(found) < 2:
        return []
    return [_well(position, entries) for position, entries in sorted(found.items())]


def _time(row: SummaryRow, stem: str, pattern) -> float:
    if row.time is not None:
        return row.time
    named = name_time(stem, pattern)
    return named[1] if named else 0.0


def _well(position: tuple[int, int], entries: list[tuple[float, SummaryRow]]) -> Well:
    latest = max(time for time, _ in entries)
    chosen = [row for time, row in entries if time == latest]
    return Well(position[0], position[1], mean_metrics(chosen), list(dict.fromkeys(r.file for r in chosen)))


def plate_shape(wells: list[Well]) -> tuple[int, int]:
    """(rows, columns): 96-well unless a well needs the 384-well layout."""
    large = any(w.row >= 8 or w.col > 12 for w in wells)
    return (16, 24) if large else (8, 12)


def plate_grid(wells: list[Well], metric: str) -> np.ndarray:
    """Rows x columns array of one metric, NaN where no image named the well."""
    grid = np.full(plate_shape(wells), np.nan)
    for well in wells:
        grid[well.row, well.col - 1] = well.metrics[metric]
    return grid


def wells_csv(wells: list[Well]) -> str:
    """The per-well table: well id, numbers, how many images and which."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["well", *METRICS, "images", "files"])
    for well in wells:
        writer.writerow([well.id, *(f"{well.metrics[m]:.6g}" for m in METRICS), len(well.files), ";".join(well.files)])
    return buffer.getvalue()
