"""Cell size: the diameter estimate, --diameter rescaling and the automatic second pass.

Expectations are hand-computed (disc areas, resize factors, tile counts) or invariants: labels
always come back at the image's own size, and rescaled discs are the same discs.
"""

from __future__ import annotations

import numpy as np
import pytest

from samcell_rt.errors import InputError, ModelError
from samcell_rt.runtime.contract import ModelInfo
from samcell_rt.runtime.scale import Diameter, estimate_diameter, resized, scale_for, scaled_shape
from samcell_rt.runtime.segmenter import Segmenter
from samcell_rt.synthetic import blob_model, synthetic_cells

SIZED = {"samcell.diameter_px": "20", "samcell.diameter_range_px": "10,40"}


class CountingEngine:
    """Wraps an engine and counts the tiles it is given (how many pixels the model saw)."""

    def __init__(self, engine) -> None:
        self.inner, self.tiles = engine, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, batch):
        self.tiles += len(batch)
        return self.inner.run(batch)


def counting(path) -> CountingEngine:
    from samcell_rt.runtime.engines import open_engine

    return CountingEngine(open_engine(path, "cpu"))


def matched_iou(labels: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU of each true disc with the predicted label covering its centre pixel."""
    ious = []
    for index in range(1, truth.max() + 1):
        cell = truth == index
        ys, xs = np.nonzero(cell)
        hit = labels[int(ys.mean()), int(xs.mean())]
        pred = labels == hit if hit else np.zeros_like(cell)
        ious.append((cell & pred).sum() / (cell | pred).sum())
    return float(np.mean(ious))


def test_estimate_is_the_median_equivalent_diameter_of_whole_cells():
    areas = np.pi * np.array([10.0, 10.0, 20.0, 40.0]) ** 2
    assert estimate_diameter(areas, np.array([0, 0, 0, 1], bool)) == pytest.approx(20.0)  # 40 px cell cut by the border
    assert estimate_diameter(areas[3:], np.array([1], bool)) == pytest.approx(80.0)  # only border cells: use them
    assert estimate_diameter(np.zeros(0), np.zeros(0, bool)) is None


def test_scale_factor_and_its_limits():
    assert scale_for(40, 20) == 0.5 and scale_for(10, 20) == 2.0
    assert scaled_shape((101, 50), 0.5) == (50, 25)
    for bad in (0, -3, "-3", float("nan")):
        with pytest.raises(InputError, match="positive"):
            Diameter.parse(bad)
    with pytest.raises(InputError, match="too far"):
        scale_for(400, 20)  # 0.05x
    assert resized(np.ones((8, 8), np.float32), (4, 2)).shape == (4, 2)


def test_fixed_diameter_shrinks_what_the_model_sees_and_returns_full_size_labels(tmp_path):
    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    image, truth = synthetic_cells((1024, 1024), count=12, radius=40, gap=12, seed=3)
    native, shrunk = counting(model), counting(model)
    base = Segmenter(native, diameter="off").segment(image)
    result = Segmenter(shrunk, diameter=80).segment(image)
    assert native.tiles == 36 and shrunk.tiles == 4  # 1024 px: 6 x 6 tiles; 0.25x gives 256 px: 2 x 2 (tiling.py)
    assert result.scale == 0.25 and base.scale == 1.0
    assert result.labels.shape == truth.shape == result.distance.shape
    assert result.metrics["cells"] == truth.max() == base.metrics["cells"]
    assert matched_iou(result.labels, truth) > 0.85
    assert result.diameter == pytest.approx(80, rel=0.1)


def test_auto_rescales_only_cells_outside_the_trained_range(tmp_path):
    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    big, big_truth = synthetic_cells((900, 900), count=12, radius=40, gap=12, seed=1)
    small, _ = synthetic_cells((900, 900), count=20, radius=12, gap=8, seed=1)
    engine = counting(model)
    segmenter = Segmenter(engine)  # diameter="auto" is the default
    result = segmenter.segment(small)
    assert result.scale == 1.0 and engine.tiles == 25 and result.diameter == pytest.approx(24, rel=0.15)
    engine.tiles = 0
    result = segmenter.segment(big)
    assert 0.22 < result.scale < 0.28  # 20 px typical / ~80 px found
    assert engine.tiles == 25 + 1  # the native pass (5 x 5 tiles), then the ~0.25x image (under 256 px: one tile)
    assert result.metrics["cells"] == big_truth.max() and result.labels.shape == big.shape
    assert not any("outside" in w for w in result.warnings)


def test_off_never_rescales_and_flags_sizes_outside_the_trained_range(tmp_path):
    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    image, _ = synthetic_cells((900, 900), count=12, radius=40, gap=12, seed=1)
    result = Segmenter(model, diameter="off").segment(image)
    assert result.scale == 1.0
    assert any("outside the 10-40 px it was trained on: give --diameter 8" in w for w in result.warnings)


def test_models_that_do_not_declare_a_size(tmp_path):
    model = blob_model(tmp_path / "plain.onnx")
    image, _ = synthetic_cells((600, 600), count=6, radius=40, gap=12, seed=2)
    assert Segmenter(model).segment(image).scale == 1.0  # auto: nothing to compare with, no rescale
    with pytest.raises(InputError, match="does not say what cell size"):
        Segmenter(model, diameter=30)
    with pytest.raises(InputError, match="'auto' or 'off'"):
        Segmenter(model, diameter="big")


@pytest.mark.parametrize("props, message", [
    ({"samcell.diameter_px": "20", "samcell.diameter_range_px": "10;40"}, "malformed"),
    ({"samcell.diameter_px": "50", "samcell.diameter_range_px": "10,40"}, "not within"),
    ({"samcell.diameter_px": "abc", "samcell.diameter_range_px": "10,40"}, "malformed"),
])
def test_lying_size_metadata_is_refused(tmp_path, props, message):
    model = blob_model(tmp_path / "m.onnx", props=props)
    with pytest.raises(ModelError, match=message):
        Segmenter(model)


def test_size_metadata_is_read(tmp_path):
    from samcell_rt.runtime.engines import open_engine

    info: ModelInfo = open_engine(blob_model(tmp_path / "m.onnx", props=SIZED), "cpu").info
    assert info.diameter == 20.0 and info.diameter_range == (10.0, 40.0)


def test_relabel_keeps_the_scale_and_estimate(tmp_path):
    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    image, _ = synthetic_cells((512, 512), count=6, radius=40, gap=12, seed=4)
    segmenter = Segmenter(model, diameter=80)
    result = segmenter.segment(image)
    again = segmenter.relabel(result, peak=0.5)
    assert again.scale == result.scale == 0.25 and again.labels.shape == image.shape
    assert again.diameter == pytest.approx(result.diameter, rel=0.1)


def test_segment_command_takes_diameter_and_reports_the_estimate(tmp_path):
    import csv

    import tifffile
    from click.testing import CliRunner

    from samcell_rt.cli import main
    from samcell_rt.synthetic import as_dtype

    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    image, truth = synthetic_cells((700, 700), count=8, radius=40, gap=12, seed=5)
    tifffile.imwrite(tmp_path / "big.tif", as_dtype(image, "uint16"))
    run = CliRunner().invoke(main, ["segment", str(tmp_path / "big.tif"), "--model", str(model), "--out",
                                    str(tmp_path / "out"), "--diameter", "80"])
    assert run.exit_code == 0, run.output
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["scale"]) == 0.25 and abs(float(row["diameter_px"]) - 80) < 8 and int(row["cells"]) == truth.max()
    assert tifffile.imread(tmp_path / "out" / "big_labels.tif").shape == image.shape
    for bad, message in (("abc", "not a number of pixels"), ("-3", "positive")):
        run = CliRunner().invoke(main, ["segment", str(tmp_path / "big.tif"), "--model", str(model), "--out",
                                        str(tmp_path / "x"), "--diameter", bad])
        assert run.exit_code == 2 and message in run.output


def test_a_plate_too_large_to_rescale_fails_clearly_and_the_run_goes_on(tmp_path):
    import tifffile

    from samcell_rt.runs.folders import RunOptions, segment_files
    from samcell_rt.synthetic import as_dtype

    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    for name, size in (("plate.tif", 600), ("small.tif", 200)):
        tifffile.imwrite(tmp_path / name, as_dtype(synthetic_cells((size, size), count=4, radius=30, seed=1)[0], "uint16"))
    outcomes = segment_files([tmp_path / "plate.tif", tmp_path / "small.tif"], tmp_path / "out",
                             Segmenter(model, diameter=60), RunOptions(plate_pixels=100_000))
    plate, small = sorted(outcomes, key=lambda o: o.path.name)
    assert not plate.ok and "cannot rescale a plate" in plate.rows[0].error
    assert small.ok


def test_a_resize_past_the_pixel_limit_fails_that_image_only(tmp_path, monkeypatch):
    import samcell_rt.runtime.segmenter as segmenter_module

    model = blob_model(tmp_path / "m.onnx", props=SIZED)
    monkeypatch.setattr(segmenter_module, "MAX_PIXELS", 150 * 150)
    segmenter = Segmenter(model, diameter=5)  # 20 / 5: a 4x enlargement
    small, _ = synthetic_cells((30, 30), count=1, radius=4, seed=0)
    large, _ = synthetic_cells((60, 60), count=2, radius=4, seed=0)  # 240 x 240 after resizing: over the limit
    results = list(segmenter.segment_many([small, large], on_error="report"))
    assert results[0].ok and results[0].labels.shape == (30, 30)
    assert not results[1].ok and "more than the 22,500 allowed" in results[1].error


def test_export_refuses_a_typical_diameter_outside_its_range():
    from samcell_rt.export.onnx import ExportError, _diameter_props

    assert _diameter_props((20.0, (10.0, 40.0))) == {"samcell.diameter_px": "20", "samcell.diameter_range_px": "10,40"}
    with pytest.raises(ExportError, match="must lie within its range"):
        _diameter_props((50.0, (10.0, 40.0)))


class SizeLimitedEngine(CountingEngine):
    """A model that reads bright cells only between 8 and 48 px across (as the model sees them), and
    hedges outside that band as real ones do: a larger cell comes out cut into quarters through its
    centre, smaller cells merged with neighbours within 3 px, and the map of a misread cell is dimmed
    by how far it lies outside the band. Cells under 2 px apart merge at any size (touching rods of a
    colony, shrunk), their map dimmed too. One pass on such cells measures a plausible, wrong size."""

    def run(self, batch):
        from scipy import ndimage

        self.tiles += len(batch)
        maps = np.zeros(batch.shape, np.float32)
        for index, tile in enumerate(batch[:, 0]):
            cells, count = ndimage.label(tile > 128)
            sizes = 2 * np.sqrt(np.bincount(cells.ravel(), minlength=count + 1) / np.pi)
            sizes[0] = 20.0  # background: neither too large nor too small
            large, small = (sizes > 48)[cells], (sizes < 8)[cells] & (cells > 0)
            cut = np.zeros(tile.shape, bool)
            for box, cell in zip(ndimage.find_objects(cells), range(1, count + 1)):
                if box is not None and sizes[cell] > 48:
                    ys, xs = np.nonzero(cells[box] == cell)
                    cut[box][int(ys.mean()), :], cut[box][:, int(xs.mean())] = True, True
            pieces = ((cells > 0) & ~(large & cut)) | ndimage.binary_dilation(small, iterations=3)
            regions, _ = ndimage.label(ndimage.binary_dilation(pieces) & ~(large & cut))
            depth = ndimage.distance_transform_edt(regions > 0)
            top = np.asarray(ndimage.maximum(depth, regions, index=np.arange(regions.max() + 1)))
            confidence = np.clip(np.minimum(48 / sizes, sizes / 8), None, 1.0)[cells]
            members = np.asarray(ndimage.labeled_comprehension(cells, regions, np.arange(regions.max() + 1),
                                                               lambda v: len(np.unique(v[v > 0])), int, 0))
            confidence = np.where(members[regions] > 1, 0.6, np.where(cells > 0, confidence, 0.8))
            maps[index, 0] = depth / np.maximum(top[regions], 1) * confidence
        return maps


def _field(radius: int, size: int, gap: int, seed: int, count: int = 14):
    image, truth = synthetic_cells((size, size), count=count, radius=radius, gap=gap, seed=seed)
    return np.rint(image * 255).astype(np.uint8), truth


@pytest.mark.parametrize("radius, size, gap, count", [(36, 900, 10, 14), (3, 160, 2, 60)])
def test_auto_finds_a_size_the_model_reads_when_the_first_pass_splits_or_merges_cells(tmp_path, radius, size, gap,
                                                                                        count):
    engine = SizeLimitedEngine(counting(blob_model(tmp_path / "m.onnx", props=SIZED)))
    image, truth = _field(radius, size, gap, seed=4, count=count)
    first = Segmenter(engine, diameter="off").segment(image)
    assert 10 <= first.diameter <= 40  # wrong but inside the trained range: one pass cannot tell
    assert abs(first.metrics["cells"] - truth.max()) > 3
    engine.tiles = 0
    result = Segmenter(engine, diameter="auto").segment(image)
    assert 8 <= 2 * radius * result.scale <= 48  # the cells reach the model at a size it reads
    assert result.diameter == pytest.approx(2 * radius, rel=0.2)
    assert result.metrics["cells"] == truth.max() and matched_iou(result.labels, truth) > 0.65  # 6 px discs: rims weigh


def test_auto_keeps_the_first_pass_when_a_step_makes_the_map_less_confident(tmp_path):
    engine = SizeLimitedEngine(counting(blob_model(tmp_path / "m.onnx", props=SIZED)))
    # 32 px cells 3 px apart, read as they are; the step to the model's 20 px (0.62x) brings them under
    # 2 px apart, where they merge into clumps
    image, truth = _field(radius=16, size=300, gap=3, seed=2, count=40)
    result = Segmenter(engine, diameter="auto").segment(image)
    assert result.scale == 1.0 and result.metrics["cells"] == truth.max()
    assert engine.tiles == 4 + 1  # the first pass (2 x 2 tiles), then the step (one tile), refused


class BlindAfterFirstPass(CountingEngine):
    """Reads the image as it is, then nothing: every later call returns an empty map."""

    def run(self, batch):
        first = self.tiles == 0
        self.tiles += len(batch)
        return self.inner.run(batch) if first else np.zeros(batch.shape, np.float32)


def test_a_step_that_finds_nothing_is_not_kept_even_for_cells_outside_the_range(tmp_path):
    engine = BlindAfterFirstPass(counting(blob_model(tmp_path / "m.onnx", props=SIZED)))
    big, truth = synthetic_cells((900, 900), count=12, radius=40, gap=12, seed=1)  # 80 px: outside 10-40
    result = Segmenter(engine, diameter="auto", batch_size=32).segment(big)
    assert engine.tiles == 25 + 1  # the step was run ...
    assert result.scale == 1.0 and result.metrics["cells"] == truth.max()  # ... and the first pass kept


def test_next_scale_and_map_misfit_by_hand():
    from samcell_rt.runtime.postprocess import distance_target
    from samcell_rt.runtime.scale import map_misfit, next_scale

    assert next_scale(40.0, 1.0, 20.0) == 0.5 and next_scale(10.0, 0.5, 20.0) == 2.0
    assert next_scale(22.0, 1.0, 20.0) is None  # a step of 1.1x: not worth a pass
    assert next_scale(None, 1.0, 20.0) is None
    assert next_scale(1.0, 1.0, 20.0) == 8.0 and next_scale(1.0, 1.0, 20.0, largest=3.0) == 3.0  # limits, pixel budget
    labels = np.zeros((40, 40), np.int32)
    labels[5:16, 5:16], labels[20:35, 10:30] = 1, 2
    ideal = distance_target(labels)
    assert map_misfit(ideal, labels, 0.1) == 0.0
    region = labels > 0  # at half height every cell pixel is off by half its ideal value; no pixel beyond
    assert map_misfit(ideal / 2, labels, 0.1) == pytest.approx(float(ideal[region].mean()) / 2, rel=1e-6)
    assert map_misfit(np.zeros((40, 40), np.float32), np.zeros((40, 40), np.int32), 0.1) == float("inf")


def test_auto_steps_stay_within_twice_the_first_pass_on_a_strip(tmp_path):
    """A 24 x 6000 strip of 6 px cells: the first pass runs one row of tiles; the step up to the model's
    20 px (about 3.3x) would run far more tiles than that, so it is not tried, and the result says so.
    The same cells in a small square field still step (their step fits the small-image budget)."""
    from samcell_rt.runtime.tiling import tile_grid

    engine = SizeLimitedEngine(counting(blob_model(tmp_path / "m.onnx", props=SIZED)))
    field, _ = _field(radius=3, size=160, gap=2, seed=4, count=60)
    strip = np.concatenate([field[68:92]] * 38, axis=1)  # 24 x 6080: the field's middle rows, repeated
    first = len(tile_grid(*strip.shape, tile=engine.info.tile))
    result = Segmenter(engine, diameter="auto").segment(strip)
    assert engine.tiles <= 2 * first and result.scale == 1.0
    assert any("did not try" in w and "time bound" in w for w in result.warnings), result.warnings
    engine.tiles = 0
    control = Segmenter(engine, diameter="auto").segment(field)  # a step that fits is taken
    assert control.scale >= 1.25 and not any("did not try" in w for w in control.warnings)


def test_auto_says_it_cannot_tell_from_too_few_cells(tmp_path):
    """One cell measures no size: auto keeps the first pass instead of stepping on it, and says so."""
    engine = counting(blob_model(tmp_path / "m.onnx", props=SIZED))
    image, truth = synthetic_cells((200, 200), count=2, radius=30, gap=10, seed=3)  # 60 px: outside 10-40
    result = Segmenter(engine, diameter="auto").segment(image)
    assert result.metrics["cells"] == truth.max() == 2
    assert result.scale == 1.0 and engine.tiles == 1  # no step was run
    assert any("cannot tell the cell size from 2 cell(s)" in w for w in result.warnings), result.warnings
