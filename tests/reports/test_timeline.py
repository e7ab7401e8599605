"""Timelines: frame times from metadata and names, and the doubling-time fit on synthetic growth."""

from __future__ import annotations

import csv
import warnings

import cv2
import numpy as np
import pytest
import tifffile

from samcell_rt.errors import InputError
from samcell_rt.reports.timeline import (
    DEFAULT_TIME_PATTERN,
    compile_time_pattern,
    fit_doubling_time,
    name_time,
    series_fit,
    series_from_rows,
)
from samcell_rt.runs.folders import RunOptions, expand_inputs, segment_files
from samcell_rt.runs.summary import SummaryRow
from samcell_rt.runtime.io import read_image
from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.reports.folder_run import segment_and_derive
from tests.reports.growth import DOUBLING_FRAMES, FRAME_HOURS, growth_counts, growth_stack


def test_fit_finds_the_exponential_phase_between_lag_and_plateau():
    counts = [10] * 5 + [10 * 2 ** (k / 4) for k in range(1, 17)] + [160] * 6
    fit = fit_doubling_time(np.arange(len(counts)), counts)
    assert fit.doubling_time == pytest.approx(4, rel=0.02)
    assert 3 <= fit.start <= 5 and 19 <= fit.end <= 21 and fit.r2 > 0.99


def test_fit_tolerates_noise_and_refuses_flat_series():
    rng = np.random.default_rng(0)
    t = np.arange(20)
    counts = np.round(20 * 2 ** (t / 5) * np.exp(rng.normal(0, 0.03, t.size)))
    assert fit_doubling_time(t, counts).doubling_time == pytest.approx(5, rel=0.1)
    assert fit_doubling_time(t, np.full(t.size, 30)) is None
    assert fit_doubling_time([0, 1], [1, 2]) is None


def test_time_increment_read_from_ome_and_imagej(tmp_path):
    frames = np.zeros((4, 16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "ome.ome.tif", frames, ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": 600.0, "TimeIncrementUnit": "s"})
    tifffile.imwrite(tmp_path / "ij.tif", frames, imagej=True, metadata={"axes": "TYX", "finterval": 0.5})
    tifffile.imwrite(tmp_path / "z.tif", frames, imagej=True, metadata={"axes": "ZYX"})
    ome, ij, z = (read_image(tmp_path / n) for n in ("ome.ome.tif", "ij.tif", "z.tif"))
    assert (ome.frame_interval, ome.time_unit, ome.frame_time(2)) == (600.0, "s", 1200.0)
    assert (ij.frame_interval, ij.time_unit) == (0.5, "s")
    assert z.time_unit == "" and z.frame_time(1) is None  # a Z-stack is no time-lapse


def test_series_from_file_names():
    pattern = compile_time_pattern(DEFAULT_TIME_PATTERN)
    assert name_time("A1_t003", pattern) == ("A1", 3.0, "frame")
    assert name_time("well_time2.5h_x", pattern) == ("well_x", 2.5, "h")
    assert name_time("ecoli", pattern) is None
    rows = [ok_row(f"d/A1_t{t}.tif", 2 ** t) for t in range(5)]
    rows.append(ok_row("d/B1_t0.tif", 3))  # one point: none
    (series,) = series_from_rows(rows)
    assert series.name == "A1" and series.times == [0, 1, 2, 3, 4]
    assert series_fit(series).doubling_time == pytest.approx(1)


@pytest.mark.parametrize("pattern", ["(", "t\\d+"])
def test_bad_time_pattern_is_an_input_error(pattern):
    with pytest.raises(InputError, match="--time-pattern"):
        RunOptions(time_pattern=pattern)


def test_growth_stack_gives_a_timeline_with_the_true_doubling_time(tmp_path, segmenter):
    counts = growth_stack(tmp_path / "growth.tif")
    out = tmp_path / "out"
    (outcome,) = segment_and_derive([tmp_path / "growth.tif"], out, segmenter)
    assert [r.cells for r in outcome.rows] == counts == growth_counts()
    with open(out / "growth_timeline.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [float(r["time_h"]) for r in table] == pytest.approx([f * FRAME_HOURS for f in range(len(counts))])
    (series,) = series_from_rows(outcome.rows)
    fit = series_fit(series)
    truth = DOUBLING_FRAMES * FRAME_HOURS
    assert abs(fit.doubling_time - truth) / truth < 0.10, fit.describe()
    assert fit.end == pytest.approx(4.5)  # the plateau is left out of the fit
    assert (out / "growth_timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_folder_of_time_points_per_well_gives_timelines_and_a_plate(tmp_path, segmenter):
    folder = tmp_path / "in"
    folder.mkdir()
    for well, start in (("A1", 1), ("B2", 2)):
        for t in range(4):
            image = synthetic_cells((256, 256), count=start * 2 ** t, seed=t + 10 * start)[0]
            cv2.imwrite(str(folder / f"{well}_t{t:02d}.png"), as_dtype(image, "uint8"))
    out = tmp_path / "out"
    segment_and_derive(expand_inputs([str(folder)], out), out, segmenter)
    for well in ("A1", "B2"):
        with open(out / f"{well}_timeline.csv", newline="") as handle:
            table = list(csv.DictReader(handle))
        assert [float(r["time_frame"]) for r in table] == [0, 1, 2, 3]
    with open(out / "plate_wells.csv", newline="") as handle:
        wells = {r["well"]: float(r["cells"]) for r in csv.DictReader(handle)}
    assert wells == {"A01": 8, "B02": 16}  # the latest time point of each well


def ok_row(file: str, cells: int, frame: int = 0, time: str = "", unit: str = "") -> SummaryRow:
    """A row as summary.csv holds it (the time as text: `nan`, `inf` included)."""
    return SummaryRow.parse({"file": file, "frame": frame, "status": "ok", "cells": cells, "confluency": 0.1,
                             "time": time, "time_unit": unit})


def test_series_names_are_unique_and_keep_unicode(tmp_path):
    """Two series with non-ASCII names used to both write series_timeline.csv."""
    from samcell_rt.reports.run_outputs import write_run_outputs

    rows = [ok_row(f"d/{name}_t{t}.tif", 2 + t) for name in ("细胞", "培养", "Cells", "cells") for t in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib glyph warnings for scripts its font lacks
        written = write_run_outputs(tmp_path, rows, DEFAULT_TIME_PATTERN, r"(?P<row>Z)(?P<col>\d)")
    csvs = sorted(n for n in written if n.endswith(".csv"))
    assert csvs == sorted(["细胞_timeline.csv", "培养_timeline.csv", "Cells_timeline.csv", "cells-2_timeline.csv"])
    assert len({name.casefold() for name in csvs}) == 4  # distinct on case-insensitive file systems too
    with open(tmp_path / "培养_timeline.csv", newline="", encoding="utf-8") as handle:
        assert all("培养_t" in row["source"] for row in csv.DictReader(handle))


def test_mixed_time_units_form_one_series_in_one_unit():
    rows = [ok_row(f"d/A1_t{label}.tif", cells) for label, cells in
            (("30min", 4), ("45min", 5), ("1h", 6), ("2h", 9), ("3h", 14))]
    (series,) = series_from_rows(rows)
    assert series.name == "A1" and series.unit == "h"  # 2.5 h span: hours read best
    assert series.times == pytest.approx([0.5, 0.75, 1, 2, 3])
    assert list(series.values("cells")) == [4, 5, 6, 9, 14]


def test_a_stack_and_files_of_the_same_name_stay_apart():
    rows = [ok_row("d/B2.tif", 10 + f, frame=f, time=str(f), unit="frame") for f in range(3)]
    rows += [ok_row(f"d/B2_t{t}.tif", 100 + t) for t in (1, 2, 3)]
    series = {s.name: s for s in series_from_rows(rows)}
    assert sorted(series) == ["B2 (files, frame index)", "B2 (stack, frame index)"]
    assert list(series["B2 (stack, frame index)"].values("cells")) == [10, 11, 12]
    assert list(series["B2 (files, frame index)"].values("cells")) == [101, 102, 103]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_times_are_no_time_points(value):
    pattern = compile_time_pattern(r"_(?P<time>[a-zA-Z0-9.+-]+)$")
    assert name_time(f"A1_{value}", pattern) is None
    rows = [ok_row(f"d/A1_{t}.tif", 3 + i) for i, t in enumerate(["1", "2", value])]
    rows.append(ok_row("d/S.tif", 5, frame=0, time=value, unit="s"))
    (series,) = series_from_rows(rows, r"_(?P<time>[a-zA-Z0-9.+-]+)$")
    assert series.times == [1, 2]


def test_infinite_imagej_interval_and_huge_ome_increment(tmp_path, segmenter):
    """finterval=inf is no interval (frames are numbered); TimeIncrement=1e300 s fits without overflow."""
    frames = np.stack([as_dtype(synthetic_cells((128, 128), count=2 + 2 * f, seed=f)[0], "uint8") for f in range(4)])
    tifffile.imwrite(tmp_path / "inf.tif", frames, imagej=True, metadata={"axes": "TYX", "finterval": float("inf")})
    assert read_image(tmp_path / "inf.tif").time_unit == "frame"
    with np.errstate(all="raise"):  # numpy overflow warnings are errors here
        fit = fit_doubling_time(np.arange(6) * 1e300, [2, 4, 8, 16, 32, 64], "s")
    assert fit.doubling_time == pytest.approx(1e300)
    out = tmp_path / "out"
    (outcome,) = segment_and_derive([tmp_path / "inf.tif"], out, segmenter)
    assert outcome.ok and (out / "inf_timeline.csv").exists()


def test_catastrophic_time_pattern_is_refused_before_any_work(tmp_path, segmenter):
    image = tmp_path / ("a" * 40 + "_x.png")
    cv2.imwrite(str(image), as_dtype(synthetic_cells((64, 64), count=2, seed=1)[0], "uint8"))
    import time

    start = time.perf_counter()
    with pytest.raises(InputError, match="backtrack"):
        segment_files([image], tmp_path / "out", segmenter, RunOptions(time_pattern=r"(?P<time>(a|aa)+)$"))
    assert time.perf_counter() - start < 10 and not (tmp_path / "out").exists()
