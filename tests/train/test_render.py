"""Appearances rendered from masks: each shows its defining contrast, stays in range and repeats by seed."""

from __future__ import annotations

import numpy as np
import pytest

from samcell_rt.synthetic import synthetic_cells
from samcell_rt.train.render import RENDERERS, dic_relief, inverted, membrane, phase_halo, render_appearance


@pytest.fixture(scope="module")
def labels():
    return synthetic_cells((192, 192), count=12, seed=5)[1].astype(np.int32)


def _rings(labels):
    from skimage.segmentation import find_boundaries

    border = find_boundaries(labels, mode="inner") & (labels > 0)
    interior = (labels > 0) & ~find_boundaries(labels, mode="thick")
    from scipy import ndimage

    deep = interior & (ndimage.distance_transform_edt(labels > 0) > 3)
    return border, deep


@pytest.mark.parametrize("kind", sorted(RENDERERS))
def test_every_rendering_is_a_full_range_uint8_image_repeatable_by_seed(labels, kind):
    first = render_appearance(labels, np.random.default_rng(7), kind)
    again = render_appearance(labels, np.random.default_rng(7), kind)
    other = render_appearance(labels, np.random.default_rng(8), kind)
    assert first.shape == labels.shape and first.dtype == np.uint8
    assert first.min() == 0 and first.max() == 255
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_membrane_outlines_are_all_that_tells_a_cell_from_the_background(labels):
    from scipy import ndimage

    border, deep = _rings(labels)
    outside = ndimage.distance_transform_edt(labels == 0) > 3  # clear of the outlines' blur
    ratios = []
    for seed in range(12):
        image = membrane(labels, np.random.default_rng(seed))
        assert image[border].mean() > 2 * max(image[deep].mean(), image[outside].mean())
        ratios.append(image[deep].mean() / image[outside].mean())
    assert 0.6 < min(ratios) < 1 < max(ratios) < 1.8  # interiors sometimes dimmer, sometimes brighter: no cue


def test_inverted_cells_are_darker_than_the_background(labels):
    image = inverted(labels, np.random.default_rng(2))
    assert image[labels > 0].mean() < image[labels == 0].mean() - 0.3


def test_phase_cells_are_dark_inside_a_bright_halo(labels):
    from scipy import ndimage

    image = phase_halo(labels, np.random.default_rng(3))
    outside = ndimage.distance_transform_edt(labels == 0)
    halo, far = (outside > 0) & (outside <= 2), outside > 12
    assert image[labels > 0].mean() < image[far].mean() < image[halo].mean()


def test_dic_lights_one_side_of_each_cell_and_shades_the_other():
    labels = np.zeros((64, 64), np.int32)
    yy, xx = np.mgrid[0:64, 0:64]
    labels[(yy - 32) ** 2 + (xx - 32) ** 2 <= 15**2] = 1

    class Shear:  # the shear direction drawn as angle 0: along +x
        def uniform(self, low, high):
            return 0.0

    image = dic_relief(labels, Shear())
    left, right = image[32, 20:30].mean(), image[32, 35:45].mean()
    assert left > 0.55 and right < 0.45  # thickness rises towards the centre, then falls
    assert abs(image[labels == 0].mean() - 0.5) < 0.02


def test_training_crops_render_only_when_asked():
    from samcell_rt.train.annotations import Sample
    from samcell_rt.train.data import Augment, random_crop

    image, labels = synthetic_cells((256, 256), count=8, seed=2)
    sample = Sample("s", image, labels.astype(np.int32))
    plain = random_crop(sample, np.random.default_rng(0), 128, Augment())
    again = random_crop(sample, np.random.default_rng(0), 128, Augment(render=0.0))
    rendered = random_crop(sample, np.random.default_rng(0), 128, Augment(render=1.0))
    np.testing.assert_array_equal(plain[0], again[0])  # no extra draw at 0: earlier recipes replay exactly
    assert not np.array_equal(plain[0], rendered[0])
    np.testing.assert_array_equal(plain[1], rendered[1])  # the target comes from the same labels


def test_a_source_is_never_rendered_in_its_own_look(labels, monkeypatch):
    from samcell_rt.train import render
    from samcell_rt.train.annotations import Sample
    from samcell_rt.train.data import Augment, random_crop

    drawn = []
    recorders = {name: (lambda lab, rng, name=name: drawn.append(name) or (lab > 0).astype(np.float32))
                 for name in RENDERERS}
    monkeypatch.setattr(render, "RENDERERS", recorders)
    image = np.zeros(labels.shape, np.uint8)
    for seed in range(60):
        random_crop(Sample("b", image, labels, "pkg:bacteria", look="phase"), np.random.default_rng(seed), 96,
                    Augment(render=1.0))
    assert set(drawn) == set(RENDERERS) - {"phase"}  # every other look still drawn
    drawn.clear()
    for seed in range(60):
        render_appearance(labels, np.random.default_rng(seed))
    assert set(drawn) == set(RENDERERS)  # a source without a look of its own gets them all


def test_rendered_copies_keep_the_labels_are_their_own_source_and_repeat(labels):
    from samcell_rt.train.annotations import Sample
    from samcell_rt.train.render import rendered_copy

    sample = Sample("frame[3]", np.zeros(labels.shape, np.uint8), labels, "pkg:hela")
    copy = rendered_copy(sample, "membrane")
    assert (copy.name, copy.source) == ("frame[3]~membrane", "pkg:hela~membrane")
    assert copy.labels is sample.labels and copy.image.dtype == np.uint8 and copy.image.std() > 0
    np.testing.assert_array_equal(copy.image, rendered_copy(sample, "membrane").image)  # every model sees this image
    assert not np.array_equal(copy.image, rendered_copy(sample, "membrane", seed=1).image)
    border, deep = _rings(labels)
    assert copy.image[border].mean() > copy.image[deep].mean() + 40
