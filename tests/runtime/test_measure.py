"""Measurements against scikit-image regionprops and hand-made label images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops

from samcell_rt.runtime.measure import cell_table, image_metrics, neighbour_pairs, with_physical_units


def test_two_touching_squares_have_one_neighbour_each():
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2
    table = cell_table(labels)
    assert table["neighbours"].tolist() == [1, 1]
    assert table["area"].tolist() == [100, 100]
    assert not table["touches_border"].any()
    assert image_metrics(labels, table)["mean_neighbours"] == 1.0


def test_ring_of_cells_each_has_two_neighbours():
    yy, xx = np.mgrid[:101, :101]
    angle = (np.degrees(np.arctan2(yy - 50, xx - 50)) + 360) % 360
    radius = np.hypot(yy - 50, xx - 50)
    labels = np.where((radius > 30) & (radius < 45), (angle // 45).astype(np.int32) + 1, 0)
    table = cell_table(labels)
    assert len(table["id"]) == 8
    assert table["neighbours"].tolist() == [2] * 8


def test_gap_tolerance_and_far_cells():
    labels = np.zeros((10, 40), np.int32)
    labels[2:8, 2:8] = 1
    labels[2:8, 9:15] = 2  # one background pixel between 1 and 2: 2 px apart, neighbours
    labels[2:8, 18:24] = 3  # two background pixels between 2 and 3: 3 px apart, not neighbours
    labels[2:8, 30:36] = 4  # far away
    assert neighbour_pairs(labels).tolist() == [[1, 2]]
    assert cell_table(labels)["neighbours"].tolist() == [1, 1, 0, 0]


def test_border_flag_and_confluency():
    labels = np.zeros((10, 10), np.int32)
    labels[0:3, 0:3] = 1
    labels[5:8, 5:8] = 2
    table = cell_table(labels)
    assert table["touches_border"].tolist() == [True, False]
    metrics = image_metrics(labels, table)
    assert metrics["cells"] == 2 and metrics["confluency"] == pytest.approx(18 / 100)
    assert metrics["mean_area_px"] == 9.0 and metrics["median_area_px"] == 9.0


def test_values_agree_with_regionprops():
    rng = np.random.default_rng(0)
    from samcell_rt.synthetic import synthetic_cells

    _, labels = synthetic_cells((200, 220), count=12, radius=10, seed=4)
    labels[50:70, 50:90] = 99  # an elongated cell
    intensity = rng.random(labels.shape)
    table = cell_table(labels, intensity)
    props = {p.label: p for p in regionprops(labels, intensity_image=intensity)}
    for i, cell_id in enumerate(table["id"]):
        p = props[cell_id]
        assert table["area"][i] == p.area
        assert table["perimeter"][i] == pytest.approx(p.perimeter)
        assert (table["centroid_y"][i], table["centroid_x"][i]) == pytest.approx(p.centroid)
        assert table["major_axis"][i] == pytest.approx(p.axis_major_length)
        assert table["minor_axis"][i] == pytest.approx(p.axis_minor_length)
        assert table["eccentricity"][i] == pytest.approx(p.eccentricity)
        assert table["solidity"][i] == pytest.approx(p.solidity)
        assert table["equivalent_diameter"][i] == pytest.approx(p.equivalent_diameter_area)
        assert table["mean_intensity"][i] == pytest.approx(p.intensity_mean)
        assert table["circularity"][i] == pytest.approx(4 * np.pi * p.area / p.perimeter**2)
    elongated = list(table["id"]).index(99)
    assert table["aspect_ratio"][elongated] > 1.5


def test_physical_units():
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    table = with_physical_units(cell_table(labels), 0.5)
    assert table["area_um2"][0] == pytest.approx(16 * 0.25)
    assert table["perimeter_um"][0] == pytest.approx(table["perimeter"][0] * 0.5)
    assert image_metrics(labels, table, 0.5)["mean_area_um2"] == pytest.approx(4.0)


def test_empty_labels():
    labels = np.zeros((8, 8), np.int32)
    table = cell_table(labels)
    assert len(table["id"]) == 0
    assert image_metrics(labels, table) == {"cells": 0, "mean_area_px": 0.0, "median_area_px": 0.0,
                                            "confluency": 0.0, "mean_neighbours": 0.0}


@pytest.mark.parametrize("size", [float("nan"), float("inf"), -0.5, 0.0, 1e300, 1e-300])
def test_a_pixel_size_that_is_no_calibration_gives_pixel_units_only(size):
    """1e300 used to overflow squaring it, NaN and inf to give NaN/inf square micrometres."""
    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    table = cell_table(labels)
    assert with_physical_units(table, size) is table
    assert "mean_area_um2" not in image_metrics(labels, table, size)


def test_pixel_sizes_any_microscope_can_have_are_kept():
    from samcell_rt.runtime.limits import SANE_PIXEL_UM

    labels = np.zeros((10, 10), np.int32)
    labels[2:6, 2:6] = 1
    for size in (*SANE_PIXEL_UM, 0.065):
        assert image_metrics(labels, cell_table(labels), size)["mean_area_um2"] == pytest.approx(16 * size**2)
