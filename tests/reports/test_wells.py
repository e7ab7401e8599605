"""Plates: well ids in file names, the per-well table and the heat maps equal the summary."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from samcell_rt.errors import InputError
from samcell_rt.reports.wells import plate_grid, plate_shape, plate_wells, well_of
from samcell_rt.runs.folders import RunOptions, expand_inputs
from samcell_rt.runs.patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN, compile_well_pattern
from samcell_rt.runs.summary import SummaryRow
from tests.reports.folder_run import segment_and_derive
from tests.reports.growth import well_folder


@pytest.mark.parametrize(("stem", "well"), [("A1", (0, 1)), ("plate1_B07_s2", (1, 7)), ("x-H12", (7, 12)),
                                            ("P24_t3", (15, 24)), ("img00", None), ("A25", None), ("Day1", None)])
def test_well_ids(stem, well):
    assert well_of(stem, compile_well_pattern(DEFAULT_WELL_PATTERN)) == well


def test_bad_well_pattern_is_an_input_error():
    with pytest.raises(InputError, match="--well-pattern"):
        RunOptions(well_pattern=r"(\w)(\d+)")


def test_latest_time_point_per_well_and_384_layout():
    rows = [SummaryRow(f"P24_t{t}.tif", 0, cells=t, confluency=0.1 * t) for t in (1, 2)]
    rows.append(SummaryRow("A1.tif", 0, cells=7, confluency=0.5))
    wells = plate_wells(rows, DEFAULT_WELL_PATTERN, DEFAULT_TIME_PATTERN)
    assert plate_shape(wells) == (16, 24)
    assert plate_grid(wells, "cells")[15, 23] == 2 and plate_grid(wells, "cells")[0, 0] == 7


def test_96_well_folder_heat_map_equals_summary(tmp_path, segmenter):
    well_folder(tmp_path / "plate")
    out = tmp_path / "out"
    segment_and_derive(expand_inputs([str(tmp_path / "plate")], out), out, segmenter)
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    wells = plate_wells([SummaryRow.parse(row) for row in summary], DEFAULT_WELL_PATTERN, DEFAULT_TIME_PATTERN)
    assert len(wells) == 96 and plate_shape(wells) == (8, 12)
    expected = np.zeros((8, 12, 2))
    for row in summary:
        name = row["file"].rsplit("_", 1)[1].split(".")[0]
        expected["ABCDEFGH".index(name[0]), int(name[1:]) - 1] = float(row["cells"]), float(row["confluency"])
    assert np.array_equal(plate_grid(wells, "cells"), expected[..., 0])
    assert np.allclose(plate_grid(wells, "confluency"), expected[..., 1])
    with open(out / "plate_wells.csv", newline="") as handle:
        table = {r["well"]: r for r in csv.DictReader(handle)}
    assert float(table["C05"]["cells"]) == expected[2, 4, 0]
    for metric in ("confluency", "cells"):
        assert (out / f"plate_{metric}.png").read_bytes()[:4] == b"\x89PNG"
    again = segment_and_derive(expand_inputs([str(tmp_path / "plate")], out), out, segmenter)
    assert all(o.skipped for o in again) and (out / "plate_cells.png").exists()  # resumed runs keep their maps
