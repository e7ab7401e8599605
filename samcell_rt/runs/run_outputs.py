"""Per-run outputs derived after each run: run.json, timelines and plate maps.

They are computed from the summary rows (not from in-memory results), so a resumed run, whose
skipped inputs only have their manifest rows, gets exactly the same timelines and plate maps.
PNGs need matplotlib (extra `report`); the CSV tables are written without it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..runtime.atomic import write_bytes_atomic, write_text_atomic
from . import plots
from .timeline import file_stems, series_fit, series_from_rows, timeline_csv
from .wells import plate_grid, plate_wells, wells_csv
from .writers import PLATE_METRICS, PLATE_TABLE, RUN_JSON


def write_run_outputs(out: Path, rows: list[dict], time_pattern: str, well_pattern: str) -> list[str]:
    """`<series>_timeline.csv/.png` per time series and `plate_*.png` + `plate_wells.csv` for a plate;
    returns the names written."""
    written, drawing = [], plots.available()
    found = series_from_rows(rows, time_pattern)
    for series, stem in zip(found, file_stems(found)):
        fit = series_fit(series)
        write_text_atomic(out / f"{stem}_timeline.csv", timeline_csv(series, fit))
        written.append(f"{stem}_timeline.csv")
        if drawing:
            write_bytes_atomic(out / f"{stem}_timeline.png", plots.timeline_png(series, fit))
            written.append(f"{stem}_timeline.png")
    wells = plate_wells(rows, well_pattern, time_pattern)
    if wells:
        write_text_atomic(out / PLATE_TABLE, wells_csv(wells))
        written.append(PLATE_TABLE)
        for metric in PLATE_METRICS if drawing else ():
            write_bytes_atomic(out / f"plate_{metric}.png", plots.plate_png(plate_grid(wells, metric), metric))
            written.append(f"plate_{metric}.png")
    return written


def read_run_info(out: Path) -> dict:
    """The run.json of an output folder ({} when absent or unreadable)."""
    try:
        info = json.loads((out / RUN_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_run_info(out: Path, info: dict, warnings: dict[str, list[str]]) -> None:
    """Settings and model of the last run, plus reader warnings (kept for inputs it skipped)."""
    kept = read_run_info(out).get("warnings") or {}
    merged = {**(kept if isinstance(kept, dict) else {}), **warnings}
    info = {**info, "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"), "warnings": {k: v for k, v in merged.items() if v}}
    write_text_atomic(out / RUN_JSON, json.dumps(info, indent=1))
