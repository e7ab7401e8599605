"""CTC SEG/DET against py-ctcmetrics on label pairs, plus hand-checked edge cases and AP."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from samcell_rt.errors import DataError
from samcell_rt.evaluate import evaluate_folders, pooled, score_pair, threshold_sweep


def squares(*boxes, shape=(60, 80)):
    labels = np.zeros(shape, np.uint16)
    for i, (y, x, h, w) in enumerate(boxes, start=1):
        labels[y : y + h, x : x + w] = i
    return labels


GT = squares((5, 5, 10, 10), (5, 30, 10, 10), (30, 5, 12, 12), (30, 40, 8, 20))
CASES = {
    "perfect": GT.copy(),
    "shifted": np.roll(GT, 2, axis=1),
    "merged": np.where(np.isin(GT, [1, 2]) | ((np.arange(60)[:, None] >= 5) & (np.arange(60)[:, None] < 15)
                                                & (np.arange(80)[None, :] >= 5) & (np.arange(80)[None, :] < 40)), 1, GT),
    "split": np.where((GT == 3) & (np.arange(80)[None, :] >= 11), 7, GT),
    "missing": np.where(GT == 4, 0, GT),
    "extra": GT + squares((50, 60, 6, 6)) * 9,
    "empty_prediction": np.zeros_like(GT),
}


def ctc_reference(ref: np.ndarray, pred: np.ndarray, tmp_path):
    """SEG and DET from py-ctcmetrics' own matching and counting code on the same pair."""
    from ctc_metrics.metrics import det, seg
    from ctc_metrics.utils.representations import count_acyclic_graph_correction_operations, match

    tifffile.imwrite(tmp_path / "ref.tif", ref)
    tifffile.imwrite(tmp_path / "res.tif", pred)
    labels_ref, labels_comp, mapped_ref, mapped_comp, iou = match(str(tmp_path / "ref.tif"), str(tmp_path / "res.tif"))
    # Their counter works on tracks: present the pair as two identical frames with one-frame-long
    # tracks (every per-frame count doubles, and so does the normaliser: SEG and DET are unchanged).
    def tracks(labels):
        return np.array([[label, 0, 1, 0] for label in labels], dtype=np.int64).reshape(-1, 4)

    ops = count_acyclic_graph_correction_operations(tracks(labels_ref), tracks(labels_comp), [labels_ref] * 2,
                                                    [labels_comp] * 2, [mapped_ref] * 2, [mapped_comp] * 2)
    return seg([labels_ref] * 2, [iou] * 2), det(**ops)


@pytest.mark.parametrize("case", sorted(CASES))
def test_seg_det_agree_with_py_ctcmetrics(case, tmp_path):
    pytest.importorskip("ctc_metrics", reason="py-ctcmetrics (dev extra) is the reference implementation")
    pred = CASES[case].astype(np.uint16)
    expected_seg, expected_det = ctc_reference(GT, pred, tmp_path)
    score = score_pair(GT, pred)
    assert score.seg == pytest.approx(expected_seg, abs=1e-6)
    assert score.det == pytest.approx(expected_det, abs=1e-6)


def test_hand_checked_values():
    assert score_pair(GT, GT).as_dict()["OP_CSB"] == 1.0
    missing = score_pair(GT, CASES["missing"])
    assert (missing.fn, missing.fp, missing.ns) == (1, 0, 0)
    assert missing.det == pytest.approx(1 - 10 / 40) and missing.seg == pytest.approx(3 / 4)
    extra = score_pair(GT, CASES["extra"])
    assert (extra.fp, extra.det) == (1, pytest.approx(1 - 1 / 40))
    merged = score_pair(GT, CASES["merged"])
    assert (merged.ns, merged.fn, merged.fp) == (1, 0, 0)
    assert merged.det == pytest.approx(1 - 5 / 40)
    d = score_pair(GT, CASES["missing"]).as_dict()
    assert d["AP50"] == pytest.approx(3 / 4) and d["count_error"] == -1


def test_empty_reference_and_prediction():
    empty = np.zeros((10, 10), np.uint16)
    assert score_pair(empty, empty).as_dict()["OP_CSB"] == 1.0
    assert score_pair(empty, squares((1, 1, 3, 3), shape=(10, 10))).as_dict()["OP_CSB"] == 0.0
    nothing = score_pair(GT, np.zeros_like(GT))
    assert nothing.seg == 0.0 and nothing.det == 0.0
    assert pooled([score_pair(GT, GT), nothing])["SEG"] == pytest.approx(0.5)


def test_cli_pairs_files_and_writes_json(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    tifffile.imwrite(gt / "a.tif", GT)
    tifffile.imwrite(pred / "a_labels.tif", CASES["missing"])
    tifffile.imwrite(gt / "man_seg007.tif", GT)
    tifffile.imwrite(pred / "t007_labels.tif", GT)
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "evaluate", "--pred", str(pred), "--gt", str(gt),
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) >= {"SEG", "DET", "OP_CSB", "AP50", "AP75", "images"}
    assert [i["name"] for i in report["images"]] == ["a", "t007"]
    assert report["DET"] == pytest.approx(1 - 10 / 80)
    assert report == evaluate_folders(pred, gt) | {"images": report["images"]}


def test_threshold_sweep_from_saved_distance_maps(tmp_path):
    yy, xx = np.mgrid[:60, :80]
    dist = np.zeros((60, 80), np.float32)
    for label in range(1, 5):
        inside = GT == label
        cy, cx = yy[inside].mean(), xx[inside].mean()
        dist = np.maximum(dist, inside * np.clip(1 - np.hypot(yy - cy, xx - cx) / 9, 0.2, 1))
    (tmp_path / "d").mkdir()
    (tmp_path / "g").mkdir()
    tifffile.imwrite(tmp_path / "d" / "a_distance.tif", dist)
    tifffile.imwrite(tmp_path / "g" / "a.tif", GT)
    rows = threshold_sweep(tmp_path / "d", tmp_path / "g", peaks=(0.5, 0.99), fills=(0.1,))
    assert [(r["peak"], r["fill"]) for r in rows] == [(0.5, 0.1), (0.99, 0.1)]
    assert rows[0]["DET"] == 1.0 and rows[1]["DET"] == 0.0


def test_segment_then_evaluate_and_sweep_end_to_end(tmp_path, blob_path):
    from samcell_rt.synthetic import as_dtype, synthetic_cells

    image, truth = synthetic_cells((300, 340), count=10, seed=5)
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "img" / "w1.tif", as_dtype(image, "uint16"))
    tifffile.imwrite(tmp_path / "gt" / "w1.tif", truth.astype(np.uint16))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "samcell_rt.cli", *args], capture_output=True, text=True,
                              timeout=300)

    assert cli("segment", str(tmp_path / "img"), "-m", str(blob_path), "-o", str(tmp_path / "out"),
               "--save-distance").returncode == 0
    proc = cli("evaluate", "--pred", str(tmp_path / "out"), "--gt", str(tmp_path / "gt"), "--json",
               str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["DET"] == 1.0 and report["SEG"] > 0.85
    proc = cli("evaluate", "--sweep", str(tmp_path / "out"), "--gt", str(tmp_path / "gt"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("OP_CSB") == 60  # 10 peaks x 6 fills


def test_a_reference_without_prediction_scores_as_empty_and_is_listed(tmp_path):
    """gt {b, c}, pred {b}: c counts as a prediction with no cells (once reported OP_CSB 1.0)."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for name in ("b", "c"):
        tifffile.imwrite(gt / f"{name}.tif", GT)
    tifffile.imwrite(pred / "b_labels.tif", GT)
    report = evaluate_folders(pred, gt)
    assert report["missing"] == ["c"] and [i["missing"] for i in report["images"]] == [False, True]
    n = int(GT.max())
    assert report["SEG"] == pytest.approx(0.5) and report["DET"] == pytest.approx(1 - 10 * n / (20 * n))
    assert report["OP_CSB"] < 1
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "evaluate", "--gt", str(gt)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "give --pred FOLDER" in proc.stderr and "not both" not in proc.stderr


@pytest.mark.parametrize("kind", ["colour-coded", "intensity"])
def test_a_reference_that_is_no_label_image_is_refused(tmp_path, kind):
    """A colour-coded RGB picture of labels, or an 8-bit intensity image, used to be scored without a word."""
    import cv2

    from samcell_rt.synthetic import as_dtype, synthetic_cells

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    tifffile.imwrite(pred / "a_labels.tif", GT)
    if kind == "colour-coded":
        palette = np.array([(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)], np.uint8)
        cv2.imwrite(str(gt / "a.png"), palette[GT])
    else:
        image, _ = synthetic_cells(GT.shape, count=4, seed=2)
        cv2.imwrite(str(gt / "a.png"), as_dtype(image, "uint8"))
    with pytest.raises(DataError, match="colour image" if kind == "colour-coded" else "intensity image"):
        evaluate_folders(pred, gt)
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "evaluate", "--pred", str(pred), "--gt", str(gt)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "a.png" in proc.stderr and "Traceback" not in proc.stderr


def test_gray_labels_stored_as_rgb_or_float_are_still_labels(tmp_path):
    import cv2

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    tifffile.imwrite(pred / "a_labels.tif", GT.astype(np.float32))
    cv2.imwrite(str(gt / "a.png"), np.repeat(GT.astype(np.uint8)[..., None], 3, axis=2))
    assert evaluate_folders(pred, gt)["SEG"] == pytest.approx(1)
