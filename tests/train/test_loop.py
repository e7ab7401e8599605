"""The trainer on a tiny SAM: learns, saves, resumes, exports, and stops early on a plateau."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="the trainer needs the 'train' extra")
pytest.importorskip("safetensors", reason="the trainer needs the 'train' extra")

from samcell_rt.errors import InputError  # noqa: E402
from samcell_rt.synthetic import synthetic_cells  # noqa: E402
from samcell_rt.train.annotations import Sample  # noqa: E402
from samcell_rt.train.loop import Recipe, Trainer, schedule  # noqa: E402


def synthetic_samples(count: int = 4) -> list[Sample]:
    samples = []
    for seed in range(count):
        image, labels = synthetic_cells((320, 320), count=14, radius=16, gap=4, seed=seed)
        samples.append(Sample(f"s{seed}", np.rint(image * 255).astype(np.uint8), labels))
    return samples


def tiny_recipe(**overrides) -> Recipe:
    base = dict(epochs=4, batch_size=2, steps_per_epoch=6, lr=1e-3, warmup_steps=3, config="tiny-256",
                val_fraction=0.25, val_crops=4, seed=0)
    return Recipe(**{**base, **overrides})


def test_schedule_warms_up_then_decays_to_zero():
    factor = schedule(warmup=4, total=12)
    assert [round(factor(s), 3) for s in (0, 3, 4, 8, 12)] == [0.25, 1.0, 1.0, 0.5, 0.0]


def test_training_reduces_validation_loss_saves_resumes_and_exports(tmp_path):
    from samcell_rt.export.onnx import export_model

    trainer = Trainer(synthetic_samples(), tmp_path / "run", tiny_recipe())
    before = trainer.validate()
    result = trainer.fit(progress=False)
    assert result["epochs"] == 4
    assert result["best_val_loss"] < before * 0.9
    for name in ("best.safetensors", "best.json", "last.safetensors", "last.json", "last.state.pt"):
        assert (tmp_path / "run" / name).exists()
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    assert meta["recipe"]["lr"] == 1e-3 and meta["data"]["train_images"] == 3 and "sam_config" in meta

    resumed = Trainer(synthetic_samples(), tmp_path / "run", tiny_recipe(epochs=5))
    resumed.resume()
    assert resumed.state["epoch"] == 4 and resumed.state["step"] == 24 and len(resumed.state["history"]) == 4
    assert resumed.validate() == pytest.approx(trainer.validate(), abs=1e-6)  # same weights restored
    resumed.fit(progress=False)
    assert resumed.state["epoch"] == 5 and resumed.state["step"] == 30
    with pytest.raises(InputError, match="different lr"):  # another recipe under the same record
        Trainer(synthetic_samples(), tmp_path / "run", tiny_recipe(epochs=6, lr=5e-4)).resume()
    with pytest.raises(InputError, match="validation images differ"):  # other data
        Trainer(synthetic_samples(6), tmp_path / "run", tiny_recipe(epochs=6)).resume()

    report = export_model(tmp_path / "run" / "best.safetensors", tmp_path / "trained.onnx")  # config from best.json
    assert report.metadata["samcell.checkpoint_layout"] == "trainer"
    # the trained cell sizes travel from the trainer's record into the model: discs of radius 16 -> ~32 px
    sizes = meta["data"]["cell_diameter_px"]
    assert 28 < sizes["typical"] < 34 and report.metadata["samcell.diameter_px"] == f"{sizes['typical']:g}"
    low, high = (float(v) for v in report.metadata["samcell.diameter_range_px"].split(","))
    assert low == pytest.approx(sizes["range"][0]) and high == pytest.approx(sizes["range"][1])


def test_validation_holds_every_source_and_crops_are_drawn_per_source():
    from samcell_rt.train.loop import _draw, split

    samples = [Sample(f"a{i}", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32), "big") for i in range(20)]
    samples += [Sample(f"b{i}", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32), "small") for i in range(3)]
    samples += [Sample("c", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32), "single")]
    train, val = split(samples, 0.15, seed=0)
    assert sorted(s.source for s in val) == ["big"] * 3 + ["single", "small"]  # 3 of 20, 1 of 3 (at least one)
    assert not {s.name for s in train} & {s.name for s in val} - {"c"}  # only a one-image source is on both sides
    rng = np.random.default_rng(0)
    drawn = [_draw(samples, rng).source for _ in range(3000)]
    shares = {source: drawn.count(source) / len(drawn) for source in ("big", "small", "single")}
    assert all(abs(share - 1 / 3) < 0.04 for share in shares.values())  # not 20:3:1 as images would give
    drawn = [_draw(samples, rng, {"small": 2.0}).source for _ in range(4000)]
    assert drawn.count("small") / len(drawn) == pytest.approx(2 / 4, abs=0.03)  # weights 1 : 2 : 1
    assert drawn.count("big") / len(drawn) == pytest.approx(1 / 4, abs=0.03)


def test_cell_diameters_per_source_hand_checked():
    from samcell_rt.train.data import Augment, cell_diameters

    def discs(radius: int, count: int) -> np.ndarray:
        labels = np.zeros((200, 200 * count), np.int32)
        yy, xx = np.mgrid[:200, : 200 * count]
        for k in range(count):
            labels[(yy - 100) ** 2 + (xx - 100 - 200 * k) ** 2 <= radius**2] = k + 1
        return labels

    samples = [Sample("s", np.zeros((200, 1000), np.uint8), discs(10, 5), "small"),
               Sample("b", np.zeros((200, 200), np.uint8), discs(50, 1), "big")]
    sizes = cell_diameters(samples, Augment(scale=(0.5, 2.0)))
    (s5, s50, _), (_, b50, b95) = sizes["per_source"]["small"], sizes["per_source"]["big"]
    assert s50 == pytest.approx(20, abs=0.5) and b50 == pytest.approx(100, abs=0.5)  # 2 * sqrt(area / pi)
    assert sizes["typical"] == pytest.approx((s50 + b50) / 2)  # median of two sources' medians
    assert sizes["range"] == [pytest.approx(s5 * 0.5, abs=0.1), pytest.approx(b95 * 2.0, abs=0.1)]
    assert cell_diameters([Sample("e", np.zeros((9, 9), np.uint8), np.zeros((9, 9), np.int32), "empty")]) is None


def test_prompt_encoder_is_frozen(tmp_path):
    trainer = Trainer(synthetic_samples(2), tmp_path / "run", tiny_recipe())
    frozen = [p.requires_grad for p in trainer.model.sam.prompt_encoder.parameters()]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in trainer.model.sam.mask_decoder.parameters())
    assert all(p.requires_grad for p in trainer.model.sam.vision_encoder.parameters())


def test_early_stopping_on_a_plateau(tmp_path):
    trainer = Trainer(synthetic_samples(2), tmp_path / "run", tiny_recipe(epochs=20, lr=0.0, patience=2,
                                                                          steps_per_epoch=1))
    result = trainer.fit(progress=False)
    assert result["stopped_early"] and result["epochs"] == 3  # epoch 1 sets the best, 2 and 3 are stale


def test_train_command_line(tmp_path):
    import subprocess
    import sys

    import tifffile

    for sample in synthetic_samples(3):
        tifffile.imwrite(tmp_path / f"{sample.name}.tif", sample.image)
        tifffile.imwrite(tmp_path / f"{sample.name}_labels.tif", sample.labels.astype(np.uint16))
    args = [sys.executable, "-m", "samcell_rt.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
            "--config", "tiny-256", "--steps-per-epoch", "2", "--batch-size", "2", "--device", "cpu"]
    proc = subprocess.run(args + ["--epochs", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "best validation loss" in proc.stdout and (tmp_path / "run" / "best.safetensors").exists()
    again = subprocess.run(args + ["--epochs", "2", "--resume"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "run" / "last.json").read_text())["metrics"]["epoch"] == 2
    other = subprocess.run(args + ["--epochs", "3", "--resume", "--lr", "0.01"], capture_output=True, text=True,
                           timeout=600)
    assert other.returncode == 2 and "cannot resume with a different lr" in other.stderr, other.stderr
    (tmp_path / "run" / "last.json").unlink()  # a run killed before its record was written
    broken = subprocess.run(args + ["--epochs", "3", "--resume"], capture_output=True, text=True, timeout=600)
    assert broken.returncode == 2 and "no last.json" in broken.stderr, broken.stderr
    for bad in ("nowhere=2", f"{tmp_path}=0", f"{tmp_path}=x", f"{tmp_path}=nan"):  # unknown source, weight not > 0
        refused = subprocess.run(args + ["--epochs", "1", "--source-weight", bad], capture_output=True, text=True,
                                 timeout=600)
        assert refused.returncode == 2 and "--source-weight" in refused.stderr, refused.stderr


def test_source_weights_are_keyed_as_the_samples_name_their_source(tmp_path):
    """`--data dir/ --source-weight dir=3` (or the reverse) weighs that source: keys are normalised
    as the loader names sources, so a trailing slash cannot make a weight silently match nothing."""
    import tifffile

    from samcell_rt.train.data import load_dataset, parse_source_weights

    for sample in synthetic_samples(1):
        tifffile.imwrite(tmp_path / f"{sample.name}.tif", sample.image)
        tifffile.imwrite(tmp_path / f"{sample.name}_labels.tif", sample.labels.astype(np.uint16))
    (source,) = {s.source for s in load_dataset([f"{tmp_path}/"])}
    assert parse_source_weights((f"{tmp_path}=3",), (f"{tmp_path}/",)) == {source: 3.0}
    assert parse_source_weights((f"{tmp_path}/=2", "pkg:hela=0.5"), (str(tmp_path), "pkg:hela")) == {source: 2.0,
                                                                                                 "pkg:hela": 0.5}


def test_frozen_stages_and_batchnorm_statistics_stay_fixed(tmp_path):
    """`freeze_stages` fixes the patch embedding and leading stages; batch norm keeps its statistics."""
    import torch

    recipe = tiny_recipe(config="lite", freeze_stages=2, epochs=1, steps_per_epoch=1, batch_size=1, val_crops=1)
    trainer = Trainer(synthetic_samples(2), tmp_path / "run", recipe)
    encoder = trainer.model.sam.vision_encoder
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(progress=False)
    after = trainer.model.state_dict()
    frozen = ("sam.vision_encoder.patch_embed.", "sam.vision_encoder.layers.0.", "sam.vision_encoder.layers.1.")
    for key, value in before.items():
        if key.startswith(frozen) or "running_" in key or "num_batches_tracked" in key:
            assert torch.equal(value, after[key]), key
    changed = [k for k in before if k.startswith("sam.vision_encoder.layers.3.") and not torch.equal(before[k], after[k])]
    assert changed and not any(p.requires_grad for p in encoder.layers[1].parameters())


def test_training_starts_from_the_shipped_model(tmp_path):
    """`train --init samcell-lite`: the shipped weights (sha256-checked) with the lite configuration
    recorded beside them, whatever --config says."""
    import torch
    from safetensors.torch import load_file

    from samcell_rt.shipped import weights_file

    recipe = tiny_recipe(init="samcell-lite", epochs=1, steps_per_epoch=1, batch_size=1, val_crops=1)
    trainer = Trainer(synthetic_samples(2), tmp_path / "run", recipe)
    assert type(trainer.model.sam.vision_encoder).__name__ == "TinyViTEncoder"
    state = trainer.model.sam.state_dict()
    shipped = load_file(str(weights_file("samcell-lite")))
    assert len(shipped) > 300 and all(torch.equal(state[k], v.float()) for k, v in shipped.items())


def test_a_rendering_run_is_also_validated_on_rendered_copies(tmp_path):
    from dataclasses import asdict

    from samcell_rt.train.data import Augment

    plain = Trainer(synthetic_samples(), tmp_path / "plain", tiny_recipe())
    rendering = Trainer(synthetic_samples(), tmp_path / "render", tiny_recipe(augment=asdict(Augment(render=0.3))))
    assert len(plain.val_batch[0]) == 4 and len(rendering.val_batch[0]) == 8
    for index in range(2):  # the original crops are those a run without rendering validates on
        np.testing.assert_array_equal(rendering.val_batch[index][:4], plain.val_batch[index][:4])
    assert rendering.data["val_renders"] == ["membrane"] and plain.data["val_renders"] == []
    assert not np.array_equal(rendering.val_batch[0][4:], plain.val_batch[0])
