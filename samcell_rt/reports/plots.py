"""Every picture samcell-rt draws (timelines, plate maps, distributions, per-image bars), as PNG bytes.

matplotlib (extra `report`) is imported only when a plot is drawn, and only through its object
API on the Agg canvas: no pyplot, so no global backend or figure state is touched, and the GUI's
threads can draw at the same time.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from .timeline import GrowthFit, Series
from .wells import ROW_LETTERS

COUNT_COLOUR, CONFLUENCY_COLOUR, FIT_COLOUR = "#1f77b4", "#2ca02c", "#d62728"
METRIC_LABELS = {"confluency": "confluency (%)", "cells": "cells (count)"}
COLUMN_LABELS = {"area": "area (px²)", "circularity": "circularity (4πA/P², 1 = circle)",
                 "aspect_ratio": "aspect ratio (major / minor axis)", "neighbours": "neighbours (count)"}
WHOLE_NUMBER_COLUMNS = {"neighbours"}


def available() -> bool:
    """True when matplotlib can be imported (the `report` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure, fmt: str) -> bytes:
    """PNG, or SVG with its text kept as text (the report inlines it: labels stay readable and searchable)."""
    from matplotlib import rc_context

    buffer = io.BytesIO()
    with warnings.catch_warnings(), rc_context({"svg.fonttype": "none", "svg.hashsalt": "samcell-rt"}):
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # boxes drawn; no need to warn
        figure.savefig(buffer, format=fmt)
    return buffer.getvalue()


def _whole_numbers(axis) -> None:
    """Ticks at whole numbers only: counts have no fractions."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def timeline_png(series: Series, fit: GrowthFit | None, fmt: str = "png") -> bytes:
    """Cell count (log scale, with the exponential-phase fit) and confluency over time."""
    figure = _figure(7, 4.6)
    count_axis, confluency_axis = figure.subplots(2, 1, sharex=True)
    times, cells = np.array(series.times), series.values("cells")
    count_axis.plot(times, cells, "o-", color=COUNT_COLOUR, markersize=3, label="cells")
    if fit is not None:
        inside = (times >= fit.start) & (times <= fit.end)
        first = cells[inside][0] * 2 ** ((times[inside] - times[inside][0]) / fit.doubling_time)
        scale = np.exp(np.mean(np.log(np.maximum(cells[inside], 1e-9)) - np.log(first)))
        count_axis.plot(times[inside], first * scale, "--", color=FIT_COLOUR, label=fit.describe())
    if np.nanmax(cells, initial=0) > 0:
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

        count_axis.set_yscale("log")  # exponential growth is a straight line
        count_axis.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        count_axis.yaxis.set_major_formatter(ScalarFormatter())
        count_axis.yaxis.set_minor_formatter(NullFormatter())
    else:
        _whole_numbers(count_axis.yaxis)
    count_axis.set_ylabel("cells (count)")
    count_axis.legend(loc="upper left", fontsize=8)
    confluency_axis.plot(times, 100 * series.values("confluency"), "o-", color=CONFLUENCY_COLOUR, markersize=3)
    confluency_axis.set_ylabel("confluency (%)")
    confluency_axis.set_xlabel(f"time ({series.unit})" if series.unit != "frame" else "frame (index)")
    if series.unit == "frame":
        _whole_numbers(confluency_axis.xaxis)
    figure.suptitle(series.name)
    return _save(figure, fmt)


def plate_png(grid: np.ndarray, metric: str, title: str = "", fmt: str = "png") -> bytes:
    """Heat map of one metric per well (empty wells grey), values written in each well of a 96-well plate."""
    rows, cols = grid.shape
    figure = _figure(1.0 + cols * 0.55, 0.8 + rows * 0.5)
    axis = figure.subplots()
    values = grid * 100 if metric == "confluency" else grid
    from matplotlib import colormaps

    image = axis.imshow(np.ma.masked_invalid(values), cmap=colormaps["viridis"].with_extremes(bad="#dddddd"))
    axis.set_xticks(range(cols), [str(c + 1) for c in range(cols)], fontsize=8)
    axis.set_yticks(range(rows), list(ROW_LETTERS[:rows]), fontsize=8)
    axis.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    if cols <= 12:
        low, high = image.get_clim()
        for (r, c), value in np.ndenumerate(values):
            if np.isfinite(value):
                light = high > low and (value - low) / (high - low) > 0.6  # dark text on the yellow end of viridis
                axis.text(c, r, f"{value:.3g}", ha="center", va="center", fontsize=7, color="black" if light else "white")
    colorbar = figure.colorbar(image, ax=axis, label=METRIC_LABELS.get(metric, metric), shrink=0.8)
    if metric == "cells":
        _whole_numbers(colorbar.ax.yaxis)
    axis.set_xlabel("column")
    axis.xaxis.set_label_position("top")
    axis.set_ylabel("row")
    axis.set_title(title or METRIC_LABELS.get(metric, metric), pad=24)
    return _save(figure, fmt)


def distributions_png(columns: dict[str, np.ndarray], fmt: str = "png") -> bytes:
    """Histograms side by side, one per column (cell sizes and shapes across a run)."""
    figure = _figure(3.0 * max(len(columns), 1), 2.8)
    axes = np.atleast_1d(figure.subplots(1, max(len(columns), 1)))
    for axis, (name, values) in zip(axes, columns.items()):
        values = values[np.isfinite(values)]
        whole = name in WHOLE_NUMBER_COLUMNS
        bins = np.arange(values.min(initial=0), values.max(initial=0) + 2) - 0.5 if whole and values.size else 40
        axis.hist(values, bins=bins, color=COUNT_COLOUR)
        axis.set_title(f"n = {values.size} cells", fontsize=9)
        axis.set_xlabel(COLUMN_LABELS.get(name, name), fontsize=8)
        axis.set_ylabel("cells (count)", fontsize=8)
        _whole_numbers(axis.yaxis)
        if whole:
            _whole_numbers(axis.xaxis)
        axis.tick_params(labelsize=8)
    return _save(figure, fmt)


def per_image_png(names: list[str], cells: list[float], confluency: list[float], fmt: str = "png") -> bytes:
    """Cell count and confluency of each image, as bars (labels while they stay readable)."""
    figure = _figure(max(5.0, min(14.0, 0.35 * len(names) + 2)), 4.0)
    count_axis, confluency_axis = figure.subplots(2, 1, sharex=True)
    positions = np.arange(len(names))
    count_axis.bar(positions, cells, color=COUNT_COLOUR)
    count_axis.set_ylabel("cells (count)")
    _whole_numbers(count_axis.yaxis)
    confluency_axis.bar(positions, 100 * np.asarray(confluency, dtype=np.float64), color=CONFLUENCY_COLOUR)
    confluency_axis.set_ylabel("confluency (%)")
    if len(names) <= 40:
        confluency_axis.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
        confluency_axis.set_xlabel("image")
    else:
        confluency_axis.set_xlabel(f"image ({len(names)} images)")
    return _save(figure, fmt)
