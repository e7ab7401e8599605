"""Correct, then retrain: saved training pairs and Cellpose GUI annotations feed `train --init`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from samcell_rt.errors import DataError, InputError
from samcell_rt.runs.training_pairs import write_training_pair
from samcell_rt.synthetic import synthetic_cells

pytest.importorskip("torch", reason="the trainer needs the 'train' extra")
pytest.importorskip("safetensors", reason="the trainer needs the 'train' extra")

from samcell_rt.cli import main  # noqa: E402
from samcell_rt.train.annotations import find_pairs, read_labels  # noqa: E402
from samcell_rt.train.data import load_dataset  # noqa: E402


def sample(seed: int):
    image, labels = synthetic_cells((300, 300), count=12, radius=16, gap=4, seed=seed)
    return np.rint(image * 255).astype(np.uint8), labels


def test_training_pairs_never_overwrite_and_are_found(tmp_path):
    image, labels = sample(0)
    first = write_training_pair(tmp_path, "my image", image, labels)
    second = write_training_pair(tmp_path, "my image", image, labels[::-1].copy())
    assert [p.name for p in first] == ["my_image.tif", "my_image_labels.tif"]
    assert [p.name for p in second] == ["my_image-2.tif", "my_image-2_labels.tif"]
    np.testing.assert_array_equal(tifffile.imread(first[1]), labels)
    assert sorted(p[0].name for p in find_pairs(tmp_path)) == ["my_image-2.tif", "my_image.tif"]
    with pytest.raises(InputError, match="do not match"):
        write_training_pair(tmp_path, "bad", image, labels[:10])


def test_cellpose_gui_annotations_are_read_safely(tmp_path):
    image, labels = sample(1)
    tifffile.imwrite(tmp_path / "cp.tif", image)
    np.save(tmp_path / "cp_seg.npy", {"masks": labels.astype(np.uint16), "outlines": np.zeros_like(labels),
                                      "filename": "cp.tif", "diameter": np.float64(30.0), "chan_choose": [0, 0]},
            allow_pickle=True)
    (samples,) = load_dataset([tmp_path])
    np.testing.assert_array_equal(samples.labels, labels)

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    np.save(tmp_path / "evil_seg.npy", {"masks": labels, "x": Payload()}, allow_pickle=True)
    with pytest.raises(DataError, match="refusing to load"):
        read_labels(tmp_path / "evil_seg.npy")
    assert not (tmp_path / "pwned").exists()


def test_corrected_folder_fine_tunes_a_model_end_to_end(tmp_path):
    """Corrected pairs -> `train --init <our checkpoint>` (its tiny config travels with it) -> export."""
    from samcell_rt.train.annotations import Sample
    from samcell_rt.train.loop import Recipe, Trainer

    base = Recipe(epochs=1, batch_size=2, steps_per_epoch=2, lr=1e-3, warmup_steps=1, config="tiny-256",
                  val_fraction=0.25, val_crops=2, seed=0)
    Trainer([Sample(f"s{i}", *sample(i)) for i in range(4)], tmp_path / "base", base, device="cpu").fit()
    corrections = tmp_path / "corrections"
    for seed in range(2, 5):
        write_training_pair(corrections, f"corrected{seed}", *sample(seed))
    runner = CliRunner()
    tuned = runner.invoke(main, ["train", "--data", str(corrections), "--init", str(tmp_path / "base" / "best.safetensors"),
                                 "--out", str(tmp_path / "tuned"), "--epochs", "1", "--steps-per-epoch", "2",
                                 "--batch-size", "2", "--warmup-steps", "1", "--device", "cpu"])
    assert tuned.exit_code == 0, tuned.output
    meta = json.loads((tmp_path / "tuned" / "best.json").read_text())
    assert meta["recipe"]["init"].endswith("best.safetensors")
    assert meta["sam_config"]["vision_config"]["hidden_size"] == json.loads(
        (tmp_path / "base" / "best.json").read_text())["sam_config"]["vision_config"]["hidden_size"]
    exported = runner.invoke(main, ["export", str(tmp_path / "tuned" / "best.safetensors"), "--out",
                                    str(tmp_path / "tuned.onnx")])
    assert exported.exit_code == 0, exported.output
    segmented = runner.invoke(main, ["segment", str(corrections / "corrected2.tif"), "--model", str(tmp_path / "tuned.onnx"),
                                     "--out", str(tmp_path / "out")])
    assert segmented.exit_code == 0, segmented.output
