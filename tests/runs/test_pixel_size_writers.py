"""Label TIFFs and summary rows with a pixel size that is no calibration (NaN, inf, 1e300 from a
broken header): written without one, said in the row, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from samcell_rt.runs.image_files import labels_tiff_bytes
from samcell_rt.runs.summary import SummaryRow


@pytest.mark.parametrize("size", [float("nan"), float("inf"), 1e300, -1.0])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])  # ImageJ layout, and the plain TIFF beyond 65535 cells
def test_labels_tiff_without_a_usable_pixel_size_has_no_resolution(size, dtype):
    labels = np.arange(12, dtype=dtype).reshape(3, 4) + (70000 if dtype == np.uint32 else 0)
    with tifffile.TiffFile(io.BytesIO(labels_tiff_bytes(labels, size))) as tif:
        np.testing.assert_array_equal(tif.asarray(), labels)
        assert tif.pages[0].tags["XResolution"].value == (1, 1)  # tifffile's default: no calibration


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_the_smallest_and_largest_usable_pixel_sizes_are_written(dtype):
    from samcell_rt.runtime.limits import SANE_PIXEL_UM

    labels = np.ones((3, 4), dtype)
    for size in SANE_PIXEL_UM:
        with tifffile.TiffFile(io.BytesIO(labels_tiff_bytes(labels, size))) as tif:
            numerator, denominator = tif.pages[0].tags["XResolution"].value
            per_um = numerator / denominator / (1e4 if tif.pages[0].tags["ResolutionUnit"].value == 3 else 1)
            assert per_um == pytest.approx(1 / size, rel=1e-3)


def test_a_summary_row_names_an_ignored_pixel_size():
    row = SummaryRow.measured("a.zarr", 0, {"cells": 3}, 0.0, (float("nan"), "ome-zarr"))
    assert row.record()["pixel_size_um"] == "" and row.record()["pixel_size_source"] == ""
    assert "pixel size from ome-zarr ignored (pixel size nan um is not a positive finite number)" in row.warning
    assert SummaryRow.measured("a.tif", 0, {}, 0.0, (0.5, "ome")).warning == ""
