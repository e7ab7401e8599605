"""End to end through the Python API: planted cells are found in every dtype and layout."""

from __future__ import annotations

import numpy as np
import pytest

from samcell_rt.errors import ImageValueError
from samcell_rt.synthetic import as_dtype, matched_iou, synthetic_cells
from tests.helpers import in_threads, same_up_to_renumbering


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_planted_cells_are_found(segmenter, dtype):
    image, truth = synthetic_cells((520, 704), count=30, seed=1)
    result = segmenter.segment(as_dtype(image, dtype))
    assert result.labels.dtype == np.int32 and result.distance.dtype == np.float32
    assert result.labels.shape == image.shape
    assert result.metrics["cells"] == truth.max() == 30
    assert min(matched_iou(truth, result.labels)) > 0.85
    assert set(result.timings) == {"preprocess", "engine", "blend", "postprocess", "measure"}
    assert result.metrics["confluency"] == pytest.approx((result.labels > 0).mean())


def test_segment_many_batches_across_images_like_one_by_one(segmenter):
    images = [synthetic_cells(shape, count=8, seed=s)[0] for s, shape in enumerate([(300, 260), (100, 90), (700, 300)])]
    alone = [segmenter.segment(img) for img in images]
    together = list(segmenter.segment_many(images))  # batch of 4 mixes tiles of different images
    assert [r.key for r in together] == [0, 1, 2]
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.distance, b.distance, atol=1e-6)


def test_concurrent_threads_share_one_segmenter(segmenter):
    images = [synthetic_cells((400, 400), count=10, seed=s)[0] for s in range(4)]
    expected = [segmenter.segment(img).labels for img in images]
    got = in_threads(lambda i: segmenter.segment(images[i]).labels, 4)
    for i in range(4):
        np.testing.assert_array_equal(got[i], expected[i])


def test_tiny_images(segmenter):
    for shape in [(1, 1), (3, 500), (40, 40)]:
        result = segmenter.segment(np.zeros(shape, np.uint16))
        assert result.labels.shape == shape and result.metrics["cells"] == 0


def test_bad_images_raise_or_are_reported(segmenter):
    good = synthetic_cells((300, 300), count=5)[0]
    with pytest.raises(ImageValueError):
        segmenter.segment(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(ValueError, match="2-D"):
        segmenter.segment(np.zeros((2, 3, 4, 5)))
    results = list(segmenter.segment_many([good, np.full((5, 5), np.nan), good], on_error="report"))
    assert [r.ok for r in results] == [True, False, True]
    assert "NaN" in results[1].error
    np.testing.assert_array_equal(results[0].labels, results[2].labels)


def test_relabel_reruns_only_postprocessing(segmenter):
    image, _ = synthetic_cells((300, 300), count=6, seed=3)
    result = segmenter.segment(image)
    assert same_up_to_renumbering(segmenter.relabel(result).labels, result.labels)
    assert segmenter.relabel(result, peak=0.999).metrics["cells"] == 0


def test_pipelined_run_gives_the_same_results_in_order(segmenter):
    images = [synthetic_cells((300, 280), count=6, seed=s)[0] for s in range(5)]
    images.insert(2, np.full((4, 4), np.nan, np.float32))  # a bad image in the middle
    serial = list(segmenter.segment_many(images, on_error="report", pipeline=False))
    piped = list(segmenter.segment_many(images, on_error="report", pipeline=True))
    assert [r.key for r in piped] == [r.key for r in serial] == list(range(6))
    assert [r.ok for r in piped] == [True, True, False, True, True, True]
    for a, b in zip(serial, piped):
        np.testing.assert_array_equal(a.labels, b.labels)
    with pytest.raises(ImageValueError):
        list(segmenter.segment_many(images, pipeline=True))
    first = next(segmenter.segment_many(iter(images), pipeline=True))  # abandoning the generator is fine
    assert first.key == 0


def test_settings_or_their_keywords_give_the_same_segmenter(blob_path):
    """`Segmenter(path, settings=SegmentSettings(...))` is `Segmenter(path, **fields)`; giving both is a mistake."""
    from samcell_rt.errors import InputError
    from samcell_rt.runtime.scale import Diameter
    from samcell_rt.runtime.segmenter import Segmenter, SegmentSettings

    settings = SegmentSettings(batch_size=3, peak=0.6, diameter="off")
    typed, keywords = Segmenter(blob_path, settings=settings), Segmenter(blob_path, batch_size=3, peak=0.6, diameter="off")
    assert typed.settings == keywords.settings == settings and settings.diameter == Diameter("off")
    for segmenter in (typed, keywords):
        assert (segmenter.batch_size, segmenter.peak, segmenter.diameter) == (3, 0.6, "off")
    with pytest.raises(TypeError, match="not both"):
        Segmenter(blob_path, settings=settings, peak=0.5)
    with pytest.raises(InputError, match="batch_size"):
        SegmentSettings(batch_size=0)


def test_diameter_is_parsed_once_from_numbers_text_and_modes():
    from samcell_rt.errors import InputError
    from samcell_rt.runtime.scale import Diameter

    assert Diameter.parse("30").pixels == Diameter.parse(30).pixels == 30.0 and not Diameter(30).auto
    assert Diameter.parse("auto").auto and Diameter().auto and Diameter.parse("auto").pixels is None
    assert Diameter.parse("off").pixels is None and not Diameter("off").auto and Diameter("off").value == "off"
    given = Diameter(12.5)
    assert Diameter.parse(given) is given
    with pytest.raises(InputError, match="'big' is not a number of pixels, 'auto' or 'off'"):
        Diameter.parse("big")
