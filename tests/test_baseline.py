"""The classical baseline (Otsu + distance-transform watershed) on images with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from samcell_rt.baseline import otsu_watershed
from samcell_rt.errors import InputError
from samcell_rt.evaluate import score_pair
from samcell_rt.synthetic import synthetic_cells


def test_separate_bright_discs_are_found_one_each():
    image, labels = synthetic_cells((256, 256), count=8, radius=12, gap=8, seed=1)
    predicted = otsu_watershed(image)
    score = score_pair(labels, predicted)
    assert predicted.max() == labels.max() == 8 and score.fn == score.fp == 0 and score.seg > 0.8


def test_dark_cells_on_a_bright_field_and_a_touching_pair():
    """Phase-contrast polarity (cells darker than background); two touching discs are split."""
    yy, xx = np.mgrid[:120, :160]
    labels = np.zeros((120, 160), np.int32)
    labels[(yy - 60) ** 2 + (xx - 50) ** 2 <= 18**2] = 1
    labels[(yy - 60) ** 2 + (xx - 85) ** 2 <= 18**2] = 2  # centres 35 px apart: the discs overlap
    image = np.where(labels > 0, 60, 200).astype(np.uint8)
    for polarity in ("dark", "auto"):
        predicted = otsu_watershed(image, polarity)
        score = score_pair(labels, predicted)
        assert predicted.max() == 2 and score.fn == score.fp == 0 and score.seg > 0.9  # smoothing rounds the seam
    wrong = otsu_watershed(image, "bright") > 0  # the wrong polarity takes the field
    assert np.mean(wrong == (labels == 0)) > 0.97


def test_blank_image_has_no_cells_and_polarity_is_checked():
    assert otsu_watershed(np.full((64, 64), 7, np.uint16)).max() == 0
    with pytest.raises(InputError, match="polarity"):
        otsu_watershed(np.arange(64 * 64).reshape(64, 64), "grey")
