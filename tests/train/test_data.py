"""Distance-map targets on hand-checked shapes, dataset adapters and crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from samcell_rt.errors import DataError
from samcell_rt.train.annotations import Sample, find_pairs
from samcell_rt.train.data import Augment, distance_target, load_dataset, random_crop


def test_square_target_hand_checked():
    labels = np.zeros((9, 9), np.int32)
    labels[2:7, 2:7] = 1  # 5x5: distances to the outside are 1 at the rim, 2 next, 3 at the centre
    target = distance_target(labels)
    assert target[4, 4] == pytest.approx(1.0)
    assert target[2, 4] == pytest.approx(1 / 3) and target[3, 4] == pytest.approx(2 / 3)
    assert target[3, 3] == pytest.approx(2 / 3)
    assert target[0, 0] == 0 and target[1, 4] == 0


def test_disc_target_peaks_at_the_centre():
    yy, xx = np.mgrid[:41, :41]
    labels = (np.hypot(yy - 20, xx - 20) <= 15).astype(np.int32)
    target = distance_target(labels)
    assert target[20, 20] == pytest.approx(1.0)
    # rim pixel: distance 1; the centre is 15.03 from the nearest outside pixel, (5, 21)
    assert target[20, 5] == pytest.approx(1 / np.hypot(15, 1))
    assert np.all(np.diff(target[20, 5:21]) > 0)  # rises monotonically to the centre


def test_two_touching_cells_each_normalised_to_one():
    labels = np.zeros((10, 20), np.int32)
    labels[2:8, 2:10] = 1
    labels[2:8, 10:14] = 2
    target = distance_target(labels)
    assert target[labels == 1].max() == pytest.approx(1.0) and target[labels == 2].max() == pytest.approx(1.0)
    assert target[5, 9] == pytest.approx(1 / 3) and target[5, 10] == pytest.approx(1 / 2)  # border between them
    cell_at_edge = np.zeros((6, 6), np.int32)
    cell_at_edge[:, :3] = 1  # touches the image edge: the edge counts as its border
    assert distance_target(cell_at_edge)[2, 0] == pytest.approx(0.5)


def test_adapters_find_every_layout(tmp_path):
    image, labels = np.full((40, 50), 100, np.uint8), np.zeros((40, 50), np.uint16)
    labels[5:15, 5:15] = 1
    (tmp_path / "cellpose").mkdir()
    cv2.imwrite(str(tmp_path / "cellpose" / "000_img.png"), image)
    cv2.imwrite(str(tmp_path / "cellpose" / "000_masks.png"), labels)
    (tmp_path / "ctc" / "01").mkdir(parents=True)
    (tmp_path / "ctc" / "01_GT" / "SEG").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "ctc" / "01" / "t003.tif", image)
    tifffile.imwrite(tmp_path / "ctc" / "01" / "t004.tif", image)  # not annotated: skipped
    tifffile.imwrite(tmp_path / "ctc" / "01_GT" / "SEG" / "man_seg003.tif", labels)
    (tmp_path / "plain").mkdir()
    tifffile.imwrite(tmp_path / "plain" / "a.tif", image)
    tifffile.imwrite(tmp_path / "plain" / "a_labels.tif", labels)
    assert [(p.name, m.name) for p, m in find_pairs(tmp_path / "cellpose")] == [("000_img.png", "000_masks.png")]
    assert [(p.name, m.name) for p, m in find_pairs(tmp_path / "ctc")] == [("t003.tif", "man_seg003.tif")]
    assert [(p.name, m.name) for p, m in find_pairs(tmp_path / "plain")] == [("a.tif", "a_labels.tif")]
    samples = load_dataset([tmp_path / "cellpose", tmp_path / "ctc", tmp_path / "plain"])
    assert len(samples) == 3 and all(s.labels.max() == 1 for s in samples)
    with pytest.raises(DataError, match="no annotated images"):
        load_dataset([tmp_path / "ctc" / "01"])


def test_coco_polygons(tmp_path):
    pytest.importorskip("pycocotools", reason="LIVECell/COCO needs pycocotools (extra 'train')")
    import json

    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((30, 40), np.uint8))
    coco = {"images": [{"id": 1, "file_name": "img.png", "height": 30, "width": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 100,
                             "bbox": [5, 5, 10, 10], "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]]}],
            "categories": [{"id": 1, "name": "cell"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    (sample,) = load_dataset([tmp_path / "ann.json"])
    assert sample.labels.max() == 1 and 90 <= (sample.labels == 1).sum() <= 130


def test_random_crop_shapes_and_augmentation():
    rng = np.random.default_rng(0)
    labels = np.zeros((300, 300), np.int32)
    labels[100:140, 100:140] = 1
    sample = Sample("s", np.random.default_rng(1).integers(0, 255, (300, 300), dtype=np.uint8), labels)
    for augment in (None, Augment()):
        tile, target = random_crop(sample, rng, 256, augment)
        assert tile.shape == target.shape == (256, 256) and tile.dtype == np.uint8 and target.dtype == np.float32
        assert 0 <= target.min() and target.max() <= 1
    small = Sample("small", np.zeros((50, 60), np.uint8), np.ones((50, 60), np.int32))
    tile, target = random_crop(small, rng, 256, None)  # padded up to a tile
    assert tile.shape == (256, 256) and target[:50, :60].max() == 1.0 and target[100, 100] == 0


def test_focus_places_crops_on_cells():
    labels = np.zeros((1000, 1000), np.int32)
    labels[700:710, 300:312] = 1  # one small cell in a large empty field
    sample = Sample("sparse", np.zeros((1000, 1000), np.uint8), labels)
    rng = np.random.default_rng(0)
    focused = [random_crop(sample, rng, 128, None, focus=1.0)[1].max() > 0 for _ in range(40)]
    uniform = [random_crop(sample, rng, 128, None, focus=0.0)[1].max() > 0 for _ in range(40)]
    assert all(focused)
    assert sum(uniform) < 10  # a uniform 128 px crop rarely meets a 10 x 12 px cell in a 1000 px field
