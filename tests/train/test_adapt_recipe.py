"""Adapt recipes (`train.finetune`): what each trains, and a planted appearance that only training
the encoder can learn.

The planted appearance: cells filled with a one-pixel checkerboard on a background of one-pixel
vertical stripes, both 0/255 in equal shares, so every region has the same histogram (the per-tile
CLAHE maps both alike) and the same mean. The starting encoder is made blind to it: its patch
embedding weights are set to one value per channel, so every embedding channel is a patch's mean
brightness and the two textures give the same embeddings. A decoder trained on those embeddings
has nothing to tell cells from background; the full recipe can retrain the patch embedding.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="adapt recipes need the 'train' extra")

from samcell_rt.errors import InputError  # noqa: E402
from samcell_rt.synthetic import synthetic_cells  # noqa: E402
from samcell_rt.train.annotations import Sample  # noqa: E402
from samcell_rt.train.data import random_crop  # noqa: E402
from samcell_rt.train.finetune import FinetuneSettings, finetune, frozen_stages  # noqa: E402

TILE = 128  # tiny SAM fed natively at 128 px: 8 x 8 patches of 16 px
FIXED = dict(flip=0.0, rotate=False, scale=(1.0, 1.0), brightness=(1.0, 1.0), invert=0.0, render=0.0)


@pytest.fixture(autouse=True)
def _home_one_thread(tmp_path, monkeypatch):
    """Frozen-part graphs go to a fresh cache; torch runs on one thread: a tiny model's step is mostly
    thread synchronisation (0.5 s per step on 1 thread, 9 s on 2 on the shared 2-core CPU at load 12)."""
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def textured(seed: int) -> Sample:
    """A TILE x TILE image whose cells differ from the background in texture only."""
    _, labels = synthetic_cells((TILE, TILE), count=3, radius=20, gap=8, seed=seed)
    yy, xx = np.mgrid[:TILE, :TILE]
    image = np.where(labels > 0, (yy + xx) % 2, xx % 2) * 255
    return Sample(f"texture-{seed}", image.astype(np.uint8), labels, "texture")


def blind_model(seed: int = 0):
    """A tiny SAM whose patch embedding sees only each patch's mean brightness."""
    from samcell_rt.export.model import SamCellTiles, random_sam, tiny_config

    sam = random_sam(tiny_config(TILE), seed)
    projection = sam.vision_encoder.patch_embed.projection
    with torch.no_grad():
        projection.weight.copy_(projection.weight.mean(dim=(1, 2, 3), keepdim=True).expand_as(projection.weight))
    return SamCellTiles(sam, TILE).eval()


def settings(recipe: str, steps: int, **more) -> FinetuneSettings:
    return FinetuneSettings(recipe=recipe, lr=1e-2, warmup_steps=5, min_steps=steps, batch_size=4, min_crops=8,
                            max_crops=8, augment=FIXED, **more)


def held_out_fit(wrapper, sample: Sample) -> tuple[float, float]:
    """(correlation, mean squared error) of the model's map against the target on an unseen image."""
    tile, target = random_crop(sample, np.random.default_rng(0), TILE, None)
    with torch.no_grad():
        prediction = wrapper(torch.from_numpy(tile)[None, None]).numpy()[0, 0]
    return float(np.corrcoef(prediction.ravel(), target.ravel())[0, 1]), float(np.mean((prediction - target) ** 2))


def test_blind_encoder_cannot_tell_the_textures_apart():
    """The premise: patches wholly inside a cell and wholly in the background embed alike, while
    the same encoder with its own random patch weights tells them apart."""
    sample = textured(1)
    tile, _ = random_crop(sample, np.random.default_rng(0), TILE, None)
    grid = sample.labels.reshape(TILE // 16, 16, TILE // 16, 16).swapaxes(1, 2).reshape(-1, 256)
    cell, background = np.flatnonzero((grid > 0).all(axis=1)), np.flatnonzero((grid == 0).all(axis=1))
    assert cell.size and background.size

    def gap(wrapper) -> float:
        with torch.no_grad():
            patches = wrapper.sam.vision_encoder.patch_embed(wrapper.pixel_values(torch.from_numpy(tile)[None, None]))
        patches = patches[0].reshape(-1, patches.shape[-1])
        return float((patches[cell].mean(0) - patches[background].mean(0)).abs().max() / patches.abs().max())

    from samcell_rt.export.model import SamCellTiles, random_sam, tiny_config

    assert gap(blind_model()) < 0.02
    assert gap(SamCellTiles(random_sam(tiny_config(TILE), 0), TILE).eval()) > 0.1


def test_recipes_train_what_they_name():
    """`decoder` leaves the encoder untouched; `full` trains the encoder too; the prompt encoder never trains."""
    trained = {}
    for recipe in ("decoder", "full"):
        wrapper = blind_model()
        before = {k: v.clone() for k, v in wrapper.sam.state_dict().items()}
        report = finetune(wrapper, [textured(1), textured(2)], 0.0, settings(recipe, 2), "tiny-blind")
        after = wrapper.sam.state_dict()
        trained[recipe] = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
        assert report.steps == 2 and report.recipe == recipe and not report.bf16
    assert trained["decoder"] == {"mask_decoder"}
    assert trained["full"] == {"vision_encoder", "mask_decoder"}


def test_unknown_or_impossible_recipes_are_refused():
    wrapper = blind_model()
    with pytest.raises(InputError, match="unknown adapt recipe 'most'"):
        frozen_stages(wrapper, "most")
    with pytest.raises(InputError, match="recipe 'late' needs an encoder of more than 3 stages"):
        frozen_stages(wrapper, "late")


@pytest.mark.slow
def test_full_recipe_learns_a_texture_the_frozen_encoder_cannot_see():
    """Same data, steps and learning rate: only the full recipe finds the cells on an unseen image."""
    train, unseen = [textured(seed) for seed in (1, 2, 4, 5)], textured(3)
    fits = {}
    for recipe in ("decoder", "full"):
        wrapper = blind_model()
        finetune(wrapper, train, 0.0, settings(recipe, 150), "tiny-blind")
        fits[recipe] = held_out_fit(wrapper, unseen)
    (decoder_corr, decoder_mse), (full_corr, full_mse) = fits["decoder"], fits["full"]
    assert abs(decoder_corr) < 0.2, fits
    assert full_corr > 0.5, fits
    assert full_mse < 0.7 * decoder_mse, fits


@pytest.mark.slow
def test_late_recipe_cut_reproduces_the_whole_model():
    """SAMCell-Lite cut after its third stage: onnxruntime's frozen part + torch's trainable rest give
    the whole torch model's logits."""
    from samcell_rt.export.checkpoints import load_checkpoint
    from samcell_rt.export.model import SamCellTiles
    from samcell_rt.train.finetune import head_logits
    from samcell_rt.train.frozen import FrozenEncoder

    loaded = load_checkpoint("samcell-lite")
    wrapper = SamCellTiles(loaded.model, 256).eval()
    stages = frozen_stages(wrapper, "late")
    tiles = np.random.default_rng(0).integers(0, 256, (1, 1, 256, 256), dtype=np.uint8)
    with torch.no_grad():
        whole = wrapper.logits(torch.from_numpy(tiles))
        cut = head_logits(wrapper, stages, torch.from_numpy(FrozenEncoder(wrapper, loaded.sha256, stages=stages)(tiles)))
    assert torch.allclose(cut, whole, atol=1e-3 * float(whole.abs().max()))


@pytest.mark.parametrize("seconds, step_seconds, expected", [
    (600, 50, 1),  # 12 steps bought: a tenth is 1
    (600, 2, 10),  # 300 steps: 30, capped at the 10 asked for
    (600, 20, 3),  # 30 steps: 3
    (10, 50, 1),  # not even one step: at least 1
])
def test_warm_up_is_a_tenth_of_the_steps_the_budget_buys(seconds, step_seconds, expected):
    from samcell_rt.train.finetune import warmup_steps

    assert warmup_steps(10, seconds, step_seconds) == expected


@pytest.mark.parametrize("part", [1, 3])
def test_gradients_added_up_over_parts_are_the_one_pass_gradients(part):
    """`batch_gradients` runs a batch `part` crops at a time to hold fewer activations; its loss and
    gradients must be those of one pass over the whole batch with torch's own mean loss (parts of 3
    and 1 for part=3: an uneven split)."""
    from samcell_rt.train.finetune import batch_gradients

    wrapper = blind_model()
    params = list(wrapper.parameters())
    for param in params:
        param.requires_grad_(True)
    rng = np.random.default_rng(1)
    tiles = torch.from_numpy(rng.integers(0, 256, (4, 1, TILE, TILE), dtype=np.uint8))
    targets = torch.from_numpy(rng.random((4, 1, TILE, TILE), dtype=np.float32))
    loss = torch.mean((torch.sigmoid(wrapper.logits(tiles)) - targets) ** 2)
    loss.backward()
    expected = [None if p.grad is None else p.grad.clone() for p in params]
    for param in params:
        param.grad = None
    assert batch_gradients(wrapper, 0, tiles, targets, part, False) == pytest.approx(loss.item(), rel=1e-5)
    assert sum(e is not None for e in expected) > 10
    for param, grad in zip(params, expected):
        if grad is None:
            assert param.grad is None
        else:
            torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-7)
