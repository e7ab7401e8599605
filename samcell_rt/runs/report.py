"""`OUT/report.html`: one self-contained page about a finished run, for looking rather than reading.

Everything is inline (base64 images, CSS, no script from anywhere), so the page opens offline and
can be mailed. It shows the run's settings and model (run.json), problems (failed files, reader
warnings, a `warning` column if summary.csv has one), per-file overlay thumbnails linking to the
full-size overlays beside the page, size and shape distributions from the cells tables, and the
timelines and plate maps derived from summary.csv. Thumbnails are small JPEGs, so large runs stay
fast and the page stays light.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import InputError
from ..runtime.atomic import write_text_atomic
from . import plots
from .patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN
from .run_outputs import read_run_info
from .timeline import series_fit, series_from_rows
from .wells import plate_grid, plate_wells
from .writers import PLATE_METRICS, REPORT, SUMMARY, output_name, read_cells_csv
from .zarr_inputs import input_stem

THUMBNAIL_PX = 192
DISTRIBUTIONS = ("area", "circularity", "aspect_ratio", "neighbours")
MAX_TABLE_ROWS = 2000
STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;width:%dpx;font-size:11px;word-break:break-all}
.thumbs img{max-width:100%%;border:1px solid #ccc}.bad{color:#b00020}.plot{max-width:100%%}
.scroll{max-height:420px;overflow:auto}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.row .plot{max-width:calc(50%% - 6px)}""" % THUMBNAIL_PX


def read_summary(out: Path) -> list[dict]:
    """summary.csv rows of an output folder; InputError when there is none."""
    try:
        with open(out / SUMMARY, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        raise InputError(f"{out} has no {SUMMARY}: run `samcell-rt segment ... --out {out}` first") from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"cannot read {out / SUMMARY} ({exc})") from None


def write_report(out: Path, time_pattern: str = DEFAULT_TIME_PATTERN, well_pattern: str = DEFAULT_WELL_PATTERN,
                 thumbnail_px: int = THUMBNAIL_PX) -> Path:
    """Build `out/report.html` from the folder's summary, run.json, overlays and cells tables."""
    out = Path(out)
    rows, info = read_summary(out), read_run_info(out)
    files = list(dict.fromkeys(row["file"] for row in rows))
    sections = [
        _settings(out, info, rows, files),
        _problems(rows, info),
        _timelines(rows, time_pattern),
        _plates(rows, well_pattern, time_pattern),
        _distributions(out, rows, files),
        _thumbnails(out, rows, files, thumbnail_px),
        _summary_table(rows),
    ]
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>samcell-rt report: {_e(out.name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>samcell-rt report: {_e(str(out))}</h1>"
            + "".join(s for s in sections if s) + "</body></html>")
    write_text_atomic(out / REPORT, page)
    return out / REPORT


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _png(data: bytes, alt: str) -> str:
    return f'<img class=plot alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(header: list[str], body: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in body)
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def _settings(out: Path, info: dict, rows: list[dict], files: list[str]) -> str:
    model = info.get("model") or {}
    failed = {row["file"] for row in rows if row.get("status") != "ok"}
    facts = [["output folder", str(out)], ["files", f"{len(files)} ({len(failed)} failed), {len(rows)} frames"],
             ["model", f"{model.get('name', '?')} {model.get('version', '')}".strip()],
             ["model sha256", model.get("sha256", "")], ["engine", info.get("engine", "")],
             ["samcell-rt", info.get("samcell_rt", "")], ["finished", info.get("finished", "")]]
    facts += [[f"parameter {k}", "" if v is None else v] for k, v in (info.get("params") or {}).items()]
    note = "" if info else "<p>No run.json in this folder (written by samcell-rt runs since the report feature).</p>"
    return "<h2>Run</h2>" + note + _table(["setting", "value"], [f for f in facts if f[1] != ""])


def _problems(rows: list[dict], info: dict) -> str:
    body = [[row["file"], row.get("frame", ""), "failed", row.get("error", "")]
            for row in rows if row.get("status") != "ok"]
    body += [[row["file"], row.get("frame", ""), "warning", row["warning"]] for row in rows if row.get("warning")]
    warnings = info.get("warnings") or {}
    body += [[file, "", "reader warning", message] for file, messages in warnings.items() for message in messages]
    if not body:
        return "<h2>Problems</h2><p>None: every file was read and segmented without warnings.</p>"
    return f"<h2 class=bad>Problems ({len(body)})</h2>" + _table(["file", "frame", "kind", "message"], body)


def _thumbnail(path: Path, size: int) -> str | None:
    """A small JPEG of an overlay as a data URI (None when the overlay is missing or unreadable)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    scale = size / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return f"data:image/jpeg;base64,{base64.b64encode(data.tobytes()).decode()}" if ok else None


def _thumbnails(out: Path, rows: list[dict], files: list[str], size: int) -> str:
    figures, by_file = [], {}
    for row in rows:
        if row.get("status") == "ok":
            by_file.setdefault(row["file"], []).append(row)
    for file in files:
        own = by_file.get(file)
        if not own:
            continue
        name = output_name(input_stem(file), "overlay", 0 if len(own) > 1 else None)
        uri = _thumbnail(out / name, size)
        if uri is None:
            continue
        cells = "/".join(row["cells"] for row in own[:4]) + ("/…" if len(own) > 4 else "")
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


def _distributions(out: Path, rows: list[dict], files: list[str]) -> str:
    if not plots.available():
        return "<h2>Distributions</h2><p>Install the `report` extra (matplotlib) for plots.</p>"
    ok = [row for row in rows if row.get("status") == "ok"]
    parts = []
    columns = cell_columns(out, files)
    if columns:
        parts.append(_png(plots.distributions_png(columns), "cell size and shape distributions"))
    if len(ok) > 1:
        names = [input_stem(r["file"]) + (f"#{r['frame']}" if r.get("frame") not in ("0", 0) else "") for r in ok]
        parts.append(_png(plots.per_image_png(names, [float(r["cells"] or 0) for r in ok],
                                              [float(r["confluency"] or 0) for r in ok]), "cells and confluency per image"))
    return "<h2>Distributions</h2>" + "".join(parts) if parts else ""


def _timelines(rows: list[dict], time_pattern: str) -> str:
    parts = []
    for series in series_from_rows(rows, time_pattern):
        fit = series_fit(series)
        text = fit.describe() if fit else "no exponential phase found (no steady growth)"
        plot = _png(plots.timeline_png(series, fit), f"timeline {series.name}") if plots.available() else ""
        parts.append(f"<h3>{_e(series.name)}</h3><p>{_e(text)}</p>{plot}")
    return "<h2>Timelines</h2>" + "".join(parts) if parts else ""


def _plates(rows: list[dict], well_pattern: str, time_pattern: str) -> str:
    wells = plate_wells(rows, well_pattern, time_pattern)
    if not wells:
        return ""
    maps = "<div class=row>" + "".join(_png(plots.plate_png(plate_grid(wells, m), m), f"plate {m}")
                                       for m in PLATE_METRICS) + "</div>" if plots.available() else ""
    body = [[w.id, f"{w.metrics['cells']:.4g}", f"{100 * w.metrics['confluency']:.1f} %", len(w.files)] for w in wells]
    return f"<h2>Plate ({len(wells)} wells)</h2>{maps}" + _table(["well", "cells", "confluency", "images"], body)


def _summary_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    header = list(rows[0])
    shown = rows[:MAX_TABLE_ROWS]
    note = f"<p>First {MAX_TABLE_ROWS} of {len(rows)} rows; all are in summary.csv.</p>" if len(rows) > len(shown) else ""
    return "<h2>Summary</h2>" + note + _table(header, [[row.get(h, "") for h in header] for row in shown])

