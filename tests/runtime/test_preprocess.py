"""Scaling to uint8 without wrap-around, and the per-tile contrast step against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from samcell_rt.errors import ImageValueError
from samcell_rt.runtime.preprocess import enhance_tile, to_uint8


def test_uint8_passes_through_unchanged():
    image = np.array([[0, 7], [200, 255]], np.uint8)
    assert to_uint8(image) is image


def test_sixteen_bit_is_scaled_by_range_not_cast():
    image = np.array([[1000, 1256], [33768, 66535 - 1000]], np.uint16)
    got = to_uint8(image)
    lo, hi = 1000, 65535
    expected = np.rint((image.astype(np.float64) - lo) * 255 / (hi - lo))
    np.testing.assert_array_equal(got, expected)
    assert got[0, 1] == 1  # a cast would give 1256 % 256 = 232


def test_float_and_percentile_scaling():
    image = np.linspace(-2.0, 3.0, 101, dtype=np.float32).reshape(1, 101)
    got = to_uint8(image)
    assert got[0, 0] == 0 and got[0, -1] == 255 and got[0, 50] == 128
    spiky = np.zeros((100, 100), np.float32)
    spiky[:50] = 1.0
    spiky[0, 0] = 1e6  # one hot pixel
    assert to_uint8(spiky, "percentile")[60, 0] == 0 and to_uint8(spiky, "percentile")[10, 0] == 255
    assert to_uint8(spiky, "range")[10, 0] == 0  # the hot pixel squeezes everything else


def test_constant_and_nan_images():
    assert not to_uint8(np.full((4, 4), 123.0)).any()
    with pytest.raises(ImageValueError, match="NaN"):
        to_uint8(np.array([[1.0, np.nan]], np.float32))


def test_enhance_tile_matches_reference_preprocessing(reference):
    pipeline, _ = reference
    captured = {}

    class Capture:  # stands in for SamProcessor to see the image the reference hands to SAM
        def __call__(self, img, return_tensors):
            captured["img"] = img
            return {"pixel_values": np.zeros(1)}

    ref = object.__new__(pipeline.SlidingWindowPipeline)
    ref.processor, ref.device = Capture(), "cpu"
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (256, 256), dtype=np.uint8),
             (np.add.outer(np.arange(256), np.arange(256)) // 4).astype(np.uint8),
             np.full((256, 256), 77, np.uint8)]
    for tile in tiles:
        try:
            ref._preprocess(tile)
        except AttributeError:  # `.to(device)` on our stand-in output, after the capture
            pass
        bgr = captured["img"]
        assert bgr.shape == (256, 256, 3)
        np.testing.assert_array_equal(enhance_tile(tile), bgr[..., 0])
