"""`summary.csv`: one row per frame of every input, failed files included, as one typed `SummaryRow`.

`SummaryRow` is the one definition of the file's columns (its fields, in the file's order). Its
numbers are kept as the file holds them (6 significant digits), so rows made during a run, rows
kept in the manifest for a resumed run and rows read back from summary.csv give the same
timelines, plate maps and report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import InputError, OutputError
from ..runtime.atomic import write_text_atomic
from ..runtime.io import ImageStack
from ..runtime.limits import pixel_size_problem
from ..runtime.measure import image_metrics
from ..runtime.segmenter import Result

SUMMARY = "summary.csv"
WHOLE_FIELDS = ("frame", "cells")
NUMBER_FIELDS = ("mean_area_px", "median_area_px", "confluency", "mean_neighbours", "mean_area_um2", "diameter_px",
                 "scale", "pixel_size_um", "time", "seconds")
MEASURED = ("mean_area_px", "median_area_px", "confluency", "mean_neighbours", "mean_area_um2")
REQUIRED_FIELDS = ("file", "frame", "cells", "confluency", "status")  # what a file needs to be read as a summary


def fmt(value: float | None) -> str:
    """Numbers in CSV files: 6 significant digits, empty for unknown."""
    return "" if value is None else f"{value:.6g}"


def _six(value: float | None) -> float | None:
    """A number as summary.csv holds it (6 significant digits), None for unknown."""
    return None if value is None else float(fmt(value))


@dataclass(frozen=True)
class SummaryRow:
    """One frame's numbers (and its time in a time-lapse stack), or the reason its input failed.
    `diameter_px` is the estimated cell diameter, `scale` the resize the model saw the image at."""

    file: str
    frame: int
    cells: int | None = None
    mean_area_px: float | None = None
    median_area_px: float | None = None
    confluency: float | None = None
    mean_neighbours: float | None = None
    mean_area_um2: float | None = None
    diameter_px: float | None = None
    scale: float | None = None
    pixel_size_um: float | None = None
    pixel_size_source: str = ""
    time: float | None = None
    time_unit: str = ""
    seconds: float | None = None
    status: str = "ok"
    warning: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, path: str | Path, frame: int, error: str) -> SummaryRow:
        """The row of a frame (or a whole input, frame 0) that could not be segmented."""
        return cls(str(path), frame, status="failed", error=error)

    @classmethod
    def measured(cls, path: str | Path, frame: int, metrics: Mapping[str, float], seconds: float,
                 pixel_size: tuple[float | None, str] = (None, ""), warnings: Sequence[str] = ()) -> SummaryRow:
        """A finished frame's numbers; `pixel_size` is (um, where it came from). A pixel size that is no
        usable calibration (NaN, inf, 1e300) is left out and said in the row's warning."""
        size, source = pixel_size
        problem = None if size is None else pixel_size_problem(size)
        if problem:
            warnings = [*warnings, f"pixel size from {source or 'the input'} ignored ({problem})"]
            size, source = None, ""
        return cls(str(path), frame, cells=metrics.get("cells"), **{name: _six(metrics.get(name)) for name in MEASURED},
                   pixel_size_um=_six(size) if size else None, pixel_size_source=source, seconds=_six(seconds),
                   warning="; ".join(warnings))

    @classmethod
    def parse(cls, record: Mapping[str, object]) -> SummaryRow:
        """A row as summary.csv or the manifest holds it (numbers as text or numbers, absent columns
        empty); ValueError saying which column holds no number."""
        values = {field.name: record.get(field.name) for field in fields(cls)}
        text = {name: "" if value is None else str(value) for name, value in values.items()}
        numbers = {name: _number(name, text[name]) for name in NUMBER_FIELDS}
        wholes = {name: _whole(name, text[name]) for name in WHOLE_FIELDS}
        return cls(**{**text, **numbers, **wholes, "frame": wholes["frame"] or 0})

    def record(self) -> dict[str, str | int]:
        """The row as summary.csv and the manifest hold it: numbers in 6 significant digits, unknown ones empty."""
        return {field.name: _text(getattr(self, field.name)) for field in fields(self)}


SUMMARY_FIELDS = tuple(field.name for field in fields(SummaryRow))


def _text(value: object) -> str | int:
    if value is None or isinstance(value, (str, int)):
        return "" if value is None else value
    return fmt(value)


def _number(name: str, text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        raise ValueError(f"{name} is {text[:40]!r}, not a number") from None


def _whole(name: str, text: str) -> int | None:
    number = _number(name, text)
    if number is not None and not number.is_integer():
        raise ValueError(f"{name} is {text[:40]!r}, not a whole number")
    return None if number is None else int(number)


def frame_rows(stack: ImageStack, results: list[Result], extra_seconds: float = 0.0) -> list[SummaryRow]:
    """Summary rows of one input's finished frames; `extra_seconds` (reading) is shared among them."""
    share, size = extra_seconds / len(results), stack.pixel_size_um
    rows = []
    for index, result in enumerate(results):
        row = SummaryRow.measured(stack.path, index, image_metrics(result.labels, result.cells, size),
                                  share + sum(result.timings.values()), (size, stack.pixel_size_source), result.warnings)
        time = stack.frame_time(index)
        rows.append(replace(row, diameter_px=_six(result.diameter), scale=_six(result.scale), time=_six(time),
                            time_unit=stack.time_unit if time is not None else ""))
    return rows


def write_summary(path: Path, rows: list[SummaryRow]) -> None:
    """Write the summary CSV atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.record() for row in rows)
    try:
        write_text_atomic(path, buffer.getvalue())
    except OSError as exc:  # a full disk at the very end of a run: say so, in one line
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None


def read_summary(out: Path) -> tuple[list[SummaryRow], list[str]]:
    """summary.csv's rows of an output folder, and which of the columns it has; InputError when there is
    none, or when it is not one samcell-rt wrote (another header, binary content, a word where a number belongs)."""
    path = out / SUMMARY
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = list(reader)
            header = reader.fieldnames or []
    except FileNotFoundError:
        raise InputError(f"{out} has no {SUMMARY}: run `samcell-rt segment ... --out {out}` first") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text CSV file (binary content)") from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read {path} ({exc})") from None
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
        raise InputError(f"{path} is not a samcell-rt summary: no column {', '.join(missing)}")
    rows = []
    for line, record in enumerate(records, start=2):
        try:
            rows.append(SummaryRow.parse(record))
        except ValueError as exc:
            raise InputError(f"{path} line {line}: {exc}") from None
    return rows, [name for name in header if name in SUMMARY_FIELDS]
