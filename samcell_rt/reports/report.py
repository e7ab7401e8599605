"""`OUT/report.html`: one self-contained page about a finished run, for looking rather than reading.

Everything is inline (SVG plots, base64 thumbnails, CSS, no script from anywhere), so the page opens offline and
can be mailed. It shows the run's settings and model (run.json), problems (failed files, reader
warnings, a `warning` column if summary.csv has one), per-file overlay thumbnails linking to the
full-size overlays beside the page, size and shape distributions from the cells tables, and the
timelines and plate maps derived from summary.csv. Plots are inline SVG whose labels are text;
thumbnails are JPEGs of 320 px, large enough to see cells, so large runs stay fast and light.
It reads like a lab report: units on every axis and column, confluency in %, settings in words.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..runs.lab_formats import read_cells_csv
from ..runs.outputs import PLATE_METRICS, REPORT, output_name
from ..runs.patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN
from ..runs.run_info import read_run_info
from ..runs.summary import SummaryRow, read_summary
from ..runs.zarr_inputs import input_stem
from ..runtime.atomic import write_text_atomic
from . import plots
from .timeline import series_fit, series_from_rows
from .wells import plate_grid, plate_wells

THUMBNAIL_PX = 320  # large enough to see cells; each links to its full-size overlay
DISTRIBUTIONS = ("area", "circularity", "aspect_ratio", "neighbours")
PARAMETER_WORDS = {"peak": "peak threshold", "fill": "fill threshold", "scaling": "intensity scaling",
                   "diameter": "cell diameter (px, or how it is chosen)", "tile": "tile size (px)",
                   "channel": "channel", "pixel_size_um": "pixel size given (µm)", "extras": "extra outputs"}
COLUMN_WORDS = {"mean_area_px": "mean area (px²)", "median_area_px": "median area (px²)", "confluency": "confluency (%)",
                "mean_neighbours": "mean neighbours", "mean_area_um2": "mean area (µm²)", "diameter_px": "cell diameter (px)",
                "scale": "resize factor", "pixel_size_um": "pixel size (µm)", "pixel_size_source": "pixel size from",
                "time_unit": "time unit", "seconds": "processing time (s)"}
MAX_TABLE_ROWS = 2000
STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;width:%dpx;font-size:11px;word-break:break-all}
.thumbs img{max-width:100%%;border:1px solid #ccc}.bad{color:#b00020}.plot{max-width:100%%}
.scroll{max-height:420px;overflow:auto}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.row .plot{max-width:calc(50%% - 6px)}figure.plot{margin:0 0 12px 0}.plot svg{max-width:100%%;height:auto}""" % THUMBNAIL_PX


def write_report(out: Path, time_pattern: str = DEFAULT_TIME_PATTERN, well_pattern: str = DEFAULT_WELL_PATTERN,
                 thumbnail_px: int = THUMBNAIL_PX) -> Path:
    """Build `out/report.html` from the folder's summary, run.json, overlays and cells tables."""
    out = Path(out)
    (rows, columns), info = read_summary(out), read_run_info(out)
    files = list(dict.fromkeys(row.file for row in rows))
    sections = [
        _settings(out, info, rows, files),
        _problems(rows, info),
        _timelines(rows, time_pattern),
        _plates(rows, well_pattern, time_pattern),
        _distributions(out, rows, files),
        _thumbnails(out, rows, files, thumbnail_px),
        _summary_table(rows, columns),
    ]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>samcell-rt report: {_e(out.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>samcell-rt report: {_e(str(out))}</h1>"
            + "".join(s for s in sections if s) + "</body></html>")
    write_text_atomic(out / REPORT, page)
    return out / REPORT


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _svg(data: bytes, alt: str) -> str:
    """A plot inlined as SVG: its axis labels and ticks are text in the page."""
    text = data.decode("utf-8")
    return f'<figure class=plot role=img aria-label="{_e(alt)}">{text[text.index("<svg"):]}</figure>'


def _table(header: list[str], body: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in body)
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def _settings(out: Path, info: dict, rows: list[SummaryRow], files: list[str]) -> str:
    model = info.get("model") or {}
    failed = {row.file for row in rows if not row.ok}
    facts = [["output folder", str(out)], ["files", f"{len(files)} ({len(failed)} failed), {len(rows)} frames"],
             ["model", f"{model.get('name', '?')} {model.get('version', '')}".strip()],
             ["model sha256", model.get("sha256", "")], ["engine", info.get("engine", "")],
             ["samcell-rt", info.get("samcell_rt", "")], ["finished", info.get("finished", "")]]
    facts += [[PARAMETER_WORDS.get(k, k.replace("_", " ")), _in_words(v)] for k, v in (info.get("params") or {}).items()]
    note = "" if info else "<p>No run.json in this folder (written by samcell-rt runs since the report feature).</p>"
    return "<h2>Run</h2>" + note + _table(["setting", "value"], [f for f in facts if f[1] != ""])


def _in_words(value) -> str:
    """A setting as a person writes it: lists joined with commas, no Python reprs, nothing for None."""
    if value is None or value == [] or value == ():
        return "none" if value is not None else ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _problems(rows: list[SummaryRow], info: dict) -> str:
    body = [[row.file, row.frame, "failed", row.error] for row in rows if not row.ok]
    body += [[row.file, row.frame, "warning", row.warning] for row in rows if row.warning]
    warnings = info.get("warnings") or {}
    body += [[file, "", "reader warning", message] for file, messages in warnings.items() for message in messages]
    if not body:
        return "<h2>Problems</h2><p>None: every file was read and segmented without warnings.</p>"
    return f"<h2 class=bad>Problems ({len(body)})</h2>" + _table(["file", "frame", "kind", "message"], body)


def _thumbnail(path: Path, size: int) -> str | None:
    """A small JPEG of an overlay as a data URI (None when the overlay is missing or unreadable)."""
    import cv2

    try:  # bytes first: OpenCV's imread prints its own warning on stderr for a missing file
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    except (OSError, cv2.error):
        return None
    if image is None:
        return None
    scale = size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return f"data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}" if ok else None


def _thumbnails(out: Path, rows: list[SummaryRow], files: list[str], size: int) -> str:
    figures, by_file = [], {}
    for row in rows:
        if row.ok:
            by_file.setdefault(row.file, []).append(row)
    for file in files:
        own = by_file.get(file)
        if not own:
            continue
        name = output_name(input_stem(file), "overlay", 0 if len(own) > 1 else None)
        uri = _thumbnail(out / name, size)
        if uri is None:
            continue
        cells = "/".join(str(row.record()["cells"]) for row in own[:4]) + ("/…" if len(own) > 4 else "")
        figures.append(f'<figure><a href="{quote(name)}" target=_blank><img alt="{_e(name)}" src="{uri}"></a>'
                       f"<figcaption>{_e(Path(file).name)} · {_e(cells)} cells"
                       f"{f' · {len(own)} frames' if len(own) > 1 else ''}</figcaption></figure>")
    if not figures:
        return ""
    return ("<h2>Overlays</h2><p>Click a thumbnail for the full-size overlay (the file beside this page).</p>"
            f"<div class=thumbs>{''.join(figures)}</div>")


def cell_columns(out: Path, files: list[str], names: tuple[str, ...] = DISTRIBUTIONS) -> dict[str, np.ndarray]:
    """The chosen per-cell columns of every cells table in the folder, concatenated."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for file in files:
        try:
            table = read_cells_csv(out / output_name(input_stem(file), "cells"))
        except (OSError, ValueError):
            continue
        rows = len(next(iter(table.values()), []))
        for name in names:
            values[name].append(table.get(name, np.full(rows, np.nan)))
    return {name: np.concatenate(v).astype(np.float64) for name, v in values.items() if sum(map(len, v))}


def _distributions(out: Path, rows: list[SummaryRow], files: list[str]) -> str:
    if not plots.available():
        return "<h2>Distributions</h2><p>Install the `report` extra (matplotlib) for plots.</p>"
    ok = [row for row in rows if row.ok]
    parts = []
    columns = cell_columns(out, files)
    if columns:
        parts.append(_svg(plots.distributions_png(columns, fmt="svg"), "cell size and shape distributions"))
    if len(ok) > 1:
        names = [input_stem(r.file) + (f"#{r.frame}" if r.frame else "") for r in ok]
        parts.append(_svg(plots.per_image_png(names, [float(r.cells or 0) for r in ok],
                                              [r.confluency or 0.0 for r in ok], fmt="svg"),
                          "cells and confluency per image"))
    return "<h2>Distributions</h2>" + "".join(parts) if parts else ""


def _timelines(rows: list[SummaryRow], time_pattern: str) -> str:
    parts = []
    for series in series_from_rows(rows, time_pattern):
        fit = series_fit(series)
        text = fit.describe() if fit else "no exponential phase found (no steady growth)"
        plot = _svg(plots.timeline_png(series, fit, fmt="svg"), f"timeline {series.name}") if plots.available() else ""
        parts.append(f"<h3>{_e(series.name)}</h3><p>{_e(text)}</p>{plot}")
    return "<h2>Timelines</h2>" + "".join(parts) if parts else ""


def _plates(rows: list[SummaryRow], well_pattern: str, time_pattern: str) -> str:
    wells = plate_wells(rows, well_pattern, time_pattern)
    if not wells:
        return ""
    maps = "<div class=row>" + "".join(_svg(plots.plate_png(plate_grid(wells, m), m, fmt="svg"), f"plate {m}")
                                       for m in PLATE_METRICS) + "</div>" if plots.available() else ""
    body = [[w.id, f"{w.metrics['cells']:.4g}", f"{100 * w.metrics['confluency']:.1f} %", len(w.files)] for w in wells]
    return f"<h2>Plate ({len(wells)} wells)</h2>{maps}" + _table(["well", "cells", "confluency", "images"], body)


def _summary_table(rows: list[SummaryRow], columns: list[str]) -> str:
    """The summary's rows in the columns its file has, confluency in %."""
    if not rows:
        return ""
    shown = rows[:MAX_TABLE_ROWS]
    note = f"<p>First {MAX_TABLE_ROWS} of {len(rows)} rows; all are in summary.csv.</p>" if len(rows) > len(shown) else ""
    body = [_table_row(row, columns) for row in shown]
    return "<h2>Summary</h2>" + note + _table([COLUMN_WORDS.get(h, h.replace("_", " ")) for h in columns], body)


def _table_row(row: SummaryRow, columns: list[str]) -> list:
    """One row's cells as summary.csv holds them, but confluency in %."""
    record = row.record()
    return [_percent(row.confluency) if name == "confluency" else record[name] for name in columns]


def _percent(fraction: float | None) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}"

