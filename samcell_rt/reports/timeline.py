"""Time series of the per-frame numbers, and the doubling time of a growing culture.

A series is either one time-lapse stack (frame times from OME/ImageJ metadata, recorded in the
summary's `time` column) or the files of a folder whose names carry a time or frame index
(`--time-pattern`, e.g. `A1_t003.tif`: series `A1`, time 3). Both are derived from summary rows,
so resumed runs get the same timelines. The doubling time comes from a log-linear fit over the
exponential phase: the longest run of consecutive frames whose log2 count is close to a rising
straight line, "close" scaled to the noise the series itself shows, so a lag phase or a plateau
does not bend the fit.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..runs.patterns import DEFAULT_TIME_PATTERN, compile_time_pattern, find_in_name
from ..runs.summary import SummaryRow
from ..runs.zarr_inputs import input_stem
from ..runtime.io import ImageStack

METRICS = ("cells", "confluency", "mean_area_px", "median_area_px", "mean_neighbours")
MIN_FIT_POINTS = 3
_SECONDS = {"ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
            "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}


@dataclass
class Series:
    """One sample over time: times ascending, one metrics dict (summary numbers) per time point."""

    name: str
    unit: str
    times: list[float] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # "file" or "file#frame" per time point

    def values(self, metric: str) -> np.ndarray:
        return np.array([_number(m.get(metric)) for m in self.metrics], dtype=np.float64)


@dataclass(frozen=True)
class GrowthFit:
    """Log-linear fit over the exponential phase: count = a * 2^(t / doubling_time) for start <= t <= end."""

    doubling_time: float
    start: float
    end: float
    r2: float
    points: int
    unit: str

    def describe(self) -> str:
        return (f"doubling time {self.doubling_time:.3g} {self.unit} (fit {self.start:g}-{self.end:g} {self.unit}, "
                f"{self.points} points, r² {self.r2:.3f})")


def name_time(stem: str, pattern) -> tuple[str, float, str] | None:
    """(series name, time, unit) from a file stem, or None when the name carries no (finite) time."""
    matches = find_in_name(pattern, stem)
    if not matches:
        return None
    match = matches[0]
    group = "time" if "time" in pattern.groupindex else 1
    try:
        value = float(match.group(group))
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):  # `nan`, `inf` caught by a permissive pattern are no time points
        return None
    unit = match.groupdict().get("unit") or "frame"
    name = (stem[: match.start()] + stem[match.end():]).strip("_-. ") or "series"
    return name, value, unit


def series_from_rows(rows: list[SummaryRow], time_pattern: str = DEFAULT_TIME_PATTERN) -> list[Series]:
    """Timelines in summary rows: stacks with a time column, and files whose names carry a time.
    Times in s, min, h... of one series are converted to one unit; a stack and a set of files are
    never one series, nor are frame indices and times, and when such series share a name, each is
    told apart by its kind. Only series with at least two time points count; equal times are averaged."""
    pattern = compile_time_pattern(time_pattern)
    found: dict[tuple[str, str, str], list[tuple[float, SummaryRow, str]]] = {}
    for row in rows:
        if not row.ok:
            continue
        stem = input_stem(row.file)
        if row.time is not None:
            kind, name, time, unit = "stack", stem, row.time, row.time_unit or "frame"
            source = f"{row.file}#{row.frame}"
        elif (named := name_time(stem, pattern)) is not None:
            kind, (name, time, unit), source = "files", named, row.file
        else:
            continue
        scale = _SECONDS.get(unit.lower())
        time, unit = (time * scale, "s") if scale else (time, unit)
        if math.isfinite(time):
            found.setdefault((kind, name, unit), []).append((time, row, source))
    found = {key: points for key, points in found.items() if len({p[0] for p in points}) >= 2}
    names = [name for _, name, _ in found]
    return [_series(name if names.count(name) == 1 else f"{name} ({kind}{', frame index' if unit == 'frame' else ''})",
                    unit, points) for (kind, name, unit), points in found.items()]


def file_stems(series: list[Series]) -> list[str]:
    """One distinct file-name prefix per series (also on case-insensitive file systems)."""
    stems: list[str] = []
    for one in series:
        stem, number = safe_name(one.name), 1
        while (stem if number == 1 else f"{stem}-{number}").casefold() in {s.casefold() for s in stems}:
            number += 1
        stems.append(stem if number == 1 else f"{stem}-{number}")
    return stems


def _series(name: str, unit: str, points: list[tuple[float, SummaryRow, str]]) -> Series:
    series = Series(name, unit)
    for time in sorted({p[0] for p in points}):
        at = [p for p in points if p[0] == time]
        series.times.append(time)
        series.metrics.append(mean_metrics([p[1] for p in at]))
        series.sources.append(";".join(p[2] for p in at))
    return readable_units(series)


def mean_metrics(rows: list[SummaryRow]) -> dict[str, float]:
    """The mean of each summary number over rows (NaN where no row has it)."""
    values = np.array([[_number(getattr(row, m)) for m in METRICS] for row in rows], dtype=np.float64)
    counted = np.isfinite(values).sum(axis=0)
    sums = np.where(np.isfinite(values), values, 0).sum(axis=0)
    return {m: float(total / n) if n else float("nan") for m, total, n in zip(METRICS, sums, counted)}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def stack_series(name: str, stack: ImageStack, metrics: list[dict]) -> Series:
    """The timeline of one stack's frames (frame index as time when it has no time axis), in readable units."""
    times = [stack.frame_time(i) if stack.time_unit else float(i) for i in range(len(metrics))]
    return readable_units(Series(name, stack.time_unit or "frame", times, list(metrics)))


def readable_units(series: Series) -> Series:
    """Seconds, minutes or hours, whichever reads best for the series' span (frame indices stay)."""
    scale = _SECONDS.get(series.unit.lower())
    if scale is None:
        return series
    span = (max(series.times) - min(series.times)) * scale
    unit, per = ("h", 3600) if span >= 7200 else ("min", 60) if span >= 120 else ("s", 1)
    series.times = [t * scale / per for t in series.times]
    series.unit = unit
    return series


def fit_doubling_time(times, counts, unit: str = "frame", min_points: int = MIN_FIT_POINTS) -> GrowthFit | None:
    """Doubling time from the longest window of consecutive points where log2(count) is close to a
    line that rises by more than the noise; None when no such window exists (no growth, too few points)."""
    t, counts = np.asarray(times, np.float64), np.asarray(counts, np.float64)
    keep = np.isfinite(t) & np.isfinite(counts) & (counts > 0)
    t, y = t[keep], np.log2(counts[keep])
    n = t.size
    if n < min_points:
        return None
    i, j = np.triu_indices(n, k=min_points - 1)
    span = float(np.ptp(t)) or 1.0
    u = (t - t.min()) / span  # fitted on 0..1: times of 1e300 s (a lying header) cannot overflow the sums
    slope, r2, rms = _window_fits(u, y, i, j)
    tolerance = _tolerance(y)
    ok = (slope * (u[j] - u[i]) > tolerance) & (rms <= tolerance) & np.isfinite(r2)  # growth beyond the noise
    if not ok.any():
        return None
    length = np.where(ok, j - i + 1, 0)
    best = np.flatnonzero(length == length.max())
    best = best[np.argmin(rms[best])]
    return GrowthFit(float(span / slope[best]), float(t[i[best]]), float(t[j[best]]), float(r2[best]),
                     int(j[best] - i[best] + 1), unit)


def _tolerance(y: np.ndarray) -> float:
    """How far from a line log2 counts may stray: twice the noise seen in second differences
    (robust to the bends between phases), at least 0.05 (about 3.5 % of a count)."""
    if y.size < 3:
        return 0.05
    noise = 1.4826 * float(np.median(np.abs(np.diff(y, 2)))) / np.sqrt(6)
    return max(0.05, 2 * noise)


def _window_fits(t: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray):
    """Least-squares lines over all windows [i, j] at once, from cumulative sums."""
    def cum(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(values)])

    st, sy, stt, sty, syy = (cum(v) for v in (t, y, t * t, t * y, y * y))
    n = (j - i + 1).astype(np.float64)

    def window(c: np.ndarray) -> np.ndarray:
        return c[j + 1] - c[i]

    a, b, aa, ab, bb = window(st), window(sy), window(stt), window(sty), window(syy)
    var_t, cov, var_y = aa - a * a / n, ab - a * b / n, bb - b * b / n
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = cov / var_t
        residual = np.maximum(var_y - slope * cov, 0.0)
        r2 = np.where(var_y > 0, 1 - residual / var_y, 1.0)
    return slope, r2, np.sqrt(residual / n)


def series_fit(series: Series) -> GrowthFit | None:
    return fit_doubling_time(series.times, series.values("cells"), series.unit)


def timeline_csv(series: Series, fit: GrowthFit | None) -> str:
    """time, the per-frame numbers, and whether the point lies in the exponential-phase fit."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"time_{series.unit}", *METRICS, "in_fit", "source"])
    for time, metrics, source in zip(series.times, series.metrics, series.sources):
        in_fit = fit is not None and fit.start <= time <= fit.end
        writer.writerow([f"{time:.6g}", *(f"{metrics[m]:.6g}" for m in METRICS), int(in_fit), source])
    return buffer.getvalue()


def safe_name(name: str) -> str:
    """A series name usable as a file name prefix: letters of any script, digits, `.`, `_`, `-`."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "series"
