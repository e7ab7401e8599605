"""Markers + watershed: hand-made maps and label parity with the reference `cells_from_dist_map`."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samcell_rt.runtime.postprocess import labels_from_distance, peak_markers
from tests.helpers import same_up_to_renumbering


def cone(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.clip(1 - np.hypot(yy - centre[0], xx - centre[1]) / radius, 0, 1)


def test_two_touching_cells_split_at_the_valley():
    dist = np.maximum(cone((60, 100), (30, 30), 22), cone((60, 100), (30, 68), 22)).astype(np.float32)
    labels = labels_from_distance(dist)
    assert labels.max() == 2
    assert labels[30, 30] != labels[30, 68]
    assert labels[30, 48] == labels[30, 30] and labels[30, 50] == labels[30, 68]  # split at x = 49
    assert labels[0, 0] == 0


def test_thresholds_define_fill_and_peak():
    dist = cone((50, 50), (25, 25), 20).astype(np.float32)
    labels = labels_from_distance(dist, peak=0.47, fill=0.09)
    np.testing.assert_array_equal(labels > 0, dist > 0.09)
    assert labels_from_distance(dist, peak=0.99, fill=0.09).max() == 0  # no peak, no cell


def test_single_pixel_peak_gets_no_marker_as_in_reference():
    dist = np.zeros((20, 20), np.float32)
    dist[5:15, 5:15] = 0.3
    dist[10, 10] = 0.9  # a one-pixel peak region: its contour has one point
    assert peak_markers(dist).max() == 0
    assert labels_from_distance(dist).max() == 0


def test_empty_and_constant_maps():
    assert labels_from_distance(np.zeros((30, 40), np.float32)).max() == 0
    labels = labels_from_distance(np.full((30, 40), 0.8, np.float32))
    assert labels.max() == 1 and (labels == 1).all()


def random_maps():
    rng = np.random.default_rng(7)
    for i in range(6):
        noise = ndimage.gaussian_filter(rng.random((300, 400)), sigma=4 + i)
        noise = (noise - noise.min()) / (noise.max() - noise.min())
        yield noise.astype(np.float32)
    for i in range(4):  # synthetic cells: many cones, some touching
        shape = (256, 384)
        dist = np.zeros(shape)
        for _ in range(40):
            dist = np.maximum(dist, cone(shape, rng.uniform(0, shape), rng.uniform(5, 25)))
        yield (dist + 0.02 * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("peak, fill", [(0.47, 0.09), (0.6, 0.2), (0.3, 0.05)])
def test_labels_match_reference_cells_from_dist_map(reference, peak, fill):
    pipeline, _ = reference
    ref = object.__new__(pipeline.SlidingWindowPipeline)  # its __init__ downloads a processor: not needed here
    for dist in random_maps():
        expected = ref.cells_from_dist_map(dist, peak, fill)
        got = labels_from_distance(dist, peak, fill)
        assert got.dtype == np.int32
        assert expected.max() > 0
        assert same_up_to_renumbering(got, expected)
