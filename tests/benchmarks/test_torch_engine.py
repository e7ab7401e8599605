"""The torch benchmark adapter: on torch CPU with a tiny model here, CUDA graphs where a GPU is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from samcell_rt.export.model import SamCellTiles, random_sam, tiny_config  # noqa: E402
from samcell_rt.runtime.contract import PREPROCESS, ModelInfo  # noqa: E402
from samcell_rt.runtime.segmenter import Segmenter  # noqa: E402
from samcell_rt.synthetic import synthetic_cells  # noqa: E402

from . import load  # noqa: E402

torch_engine = load("torch_engine")
INFO = ModelInfo(Path("tiny-random"), "tiny-random", "0", 256, 0.47, 0.09, "0" * 64, PREPROCESS)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def module():
    return SamCellTiles(random_sam(tiny_config(256), seed=0)).eval()


@pytest.fixture(scope="module")
def tiles():
    return np.random.default_rng(3).integers(0, 256, (3, 1, 256, 256), dtype=np.uint8)


def direct(module, tiles: np.ndarray) -> np.ndarray:
    """The wrapped module called on its own, fp32: the reference for the adapter's output."""
    with torch.no_grad():
        return module.cpu()(torch.from_numpy(tiles)).numpy()


def test_fp32_adapter_returns_what_the_module_computes(module, tiles):
    maps = torch_engine.TorchEngine(module, INFO, "fp32", device="cpu").run(tiles)
    assert maps.dtype == np.float32 and maps.shape == tiles.shape
    np.testing.assert_allclose(maps, direct(module, tiles), atol=1e-6)
    assert maps.std() > 1e-3  # the tiny random model's output follows its input: the comparison means something


def test_bf16_autocast_is_engaged_and_stays_close(module, tiles):
    maps = torch_engine.TorchEngine(module, INFO, "bf16", device="cpu").run(tiles)
    error = np.abs(maps - direct(module, tiles)).max()
    assert 0 < error < 0.05, error  # bf16 matrix work changes the maps a little, never by much


def test_adapter_runs_inside_the_samcell_pipeline(module):
    image, _ = synthetic_cells((300, 420), count=20, radius=10, seed=2)
    engine = torch_engine.TorchEngine(module, INFO, "fp32", device="cpu", batch=4)
    segmenter = Segmenter(engine, batch_size=4)
    result = segmenter.segment(image)
    assert segmenter.engine_name.endswith("(benchmark adapter)")
    assert result.labels.shape == image.shape and result.labels.dtype == np.int32
    assert 0.0 <= result.distance.min() and result.distance.max() <= 1.0
    assert result.timings["engine"] > 0


@pytest.mark.parametrize("changes, message", [(dict(precision="fp8"), "precision"),
                                               (dict(graphs=True), "CUDA graphs need a CUDA device")])
def test_bad_settings_are_refused(module, changes, message):
    with pytest.raises(ValueError, match=message):
        torch_engine.TorchEngine(module, INFO, **{"device": "cpu", **changes})


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_replay_matches_eager_and_pads_short_batches(module, tiles, precision):
    eager = torch_engine.TorchEngine(module, INFO, precision, device="cuda", batch=4)
    graphs = torch_engine.TorchEngine(module, INFO, precision, device="cuda", batch=4, graphs=True)
    expected = eager.run(tiles)
    np.testing.assert_allclose(graphs.run(tiles), expected, atol=1e-3)  # 3 tiles padded into a batch of 4
    np.testing.assert_allclose(graphs.run(tiles[:1]), expected[:1], atol=1e-3)
    with pytest.raises(ValueError, match="captured batch"):
        graphs.run(np.concatenate([tiles, tiles]))
