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


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a name in a script the font lacks draws as boxes: no reason to warn the user
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def timeline_png(series: Series, fit: GrowthFit | None) -> bytes:
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
    count_axis.set_ylabel("cells")
    count_axis.legend(loc="upper left", fontsize=8)
    confluency_axis.plot(times, 100 * series.values("confluency"), "o-", color=CONFLUENCY_COLOUR, markersize=3)
    confluency_axis.set_ylabel("confluency (%)")
    confluency_axis.set_xlabel(f"time ({series.unit})")
    figure.suptitle(series.name)
    return _png(figure)


def plate_png(grid: np.ndarray, metric: str, title: str = "") -> bytes:
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
    figure.colorbar(image, ax=axis, label="confluency (%)" if metric == "confluency" else metric, shrink=0.8)
    axis.set_title(title or metric)
    return _png(figure)


def distributions_png(columns: dict[str, np.ndarray]) -> bytes:
    """Histograms side by side, one per column (cell sizes and shapes across a run)."""
    figure = _figure(3.0 * max(len(columns), 1), 2.6)
    axes = np.atleast_1d(figure.subplots(1, max(len(columns), 1)))
    for axis, (name, values) in zip(axes, columns.items()):
        values = values[np.isfinite(values)]
        axis.hist(values, bins=40, color=COUNT_COLOUR)
        axis.set_title(f"{name} (n={values.size})", fontsize=9)
        axis.tick_params(labelsize=8)
    return _png(figure)


def per_image_png(names: list[str], cells: list[float], confluency: list[float]) -> bytes:
    """Cell count and confluency of each image, as bars (labels while they stay readable)."""
    figure = _figure(max(5.0, min(14.0, 0.35 * len(names) + 2)), 4.0)
    count_axis, confluency_axis = figure.subplots(2, 1, sharex=True)
    positions = np.arange(len(names))
    count_axis.bar(positions, cells, color=COUNT_COLOUR)
    count_axis.set_ylabel("cells")
    confluency_axis.bar(positions, 100 * np.asarray(confluency, dtype=np.float64), color=CONFLUENCY_COLOUR)
    confluency_axis.set_ylabel("confluency (%)")
    if len(names) <= 40:
        confluency_axis.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
    else:
        confluency_axis.set_xlabel(f"{len(names)} images")
    return _png(figure)
