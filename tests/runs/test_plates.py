"""Banded plate processing: labels equal the whole-image path up to renumbering, cells on band seams."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from samcell_rt.runs.folders import RunOptions
from samcell_rt.runs.plates import Bands, segment_plate
from samcell_rt.synthetic import as_dtype
from tests.helpers import same_up_to_renumbering

pytest.importorskip("zarr", reason="banded reading uses zarr")


def cells_on_seams(shape=(1100, 700), band=256, radius=14, seed=0):
    """Discs centred on every band boundary plus random ones elsewhere, some touching."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = 0.1 + 0.02 * rng.standard_normal(shape)
    centres = [(b + dy, x) for b in range(band, shape[0], band) for x in range(30, shape[1] - 30, 45)
               for dy in (rng.integers(-3, 4),)]
    centres += [tuple(rng.uniform(20, np.array(shape) - 20)) for _ in range(60)]
    for cy, cx in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.8
    return np.clip(image, 0, 1).astype(np.float32)


@pytest.mark.parametrize("tiled", [True, False])
def test_banded_labels_equal_whole_image_labels(tmp_path, blob_path, tiled):
    from samcell_rt import load_model

    image = as_dtype(cells_on_seams(), "uint16")
    kwargs = {"tile": (256, 256)} if tiled else {"rowsperstrip": 64}
    tifffile.imwrite(tmp_path / "plate.tif", image, compression="zlib", **kwargs)
    segmenter = load_model(str(blob_path), batch_size=4)
    whole = segmenter.segment(image)
    result = segment_plate(tmp_path / "plate.tif", tmp_path / "labels.tif", segmenter, RunOptions(),
                           bands=Bands(band=256, halo=96))
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.is_bigtiff and tif.pages.first.is_tiled
        banded = tif.asarray()
    assert banded.dtype == np.uint32
    assert whole.metrics["cells"] > 80
    assert same_up_to_renumbering(banded.astype(np.int64), whole.labels.astype(np.int64))
    assert result.metrics["cells"] == whole.metrics["cells"]
    assert result.metrics["mean_area_px"] == pytest.approx(whole.metrics["mean_area_px"])


def test_cli_sends_large_tiffs_down_the_banded_path(tmp_path, blob_path, monkeypatch):
    from samcell_rt import load_model
    from samcell_rt.runs.folders import RunOptions, segment_files

    image = as_dtype(cells_on_seams((600, 500)), "uint8")
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(256, 256))
    outcomes = segment_files([tmp_path / "big.tif"], tmp_path / "out", load_model(str(blob_path)),
                             RunOptions(plate_pixels=100_000))
    assert outcomes[0].ok and outcomes[0].rows[0].cells > 10
    with tifffile.TiffFile(tmp_path / "out" / "big_labels.tif") as tif:
        assert tif.is_bigtiff
