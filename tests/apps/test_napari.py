"""The napari plugin: manifest, reader and sample data without Qt; the dock widget driven headless
with pytest-qt on napari's viewer model (no OpenGL needed; skipped with a reason where Qt or
napari is missing)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def test_manifest_is_valid_and_discovered():
    npe2 = pytest.importorskip("npe2", reason="the napari plugin needs the 'napari' extra")
    manifest = npe2.PluginManifest.from_distribution("samcell-rt")
    assert {c.id for c in manifest.contributions.commands} == {"samcell-rt.segment_widget", "samcell-rt.get_reader",
                                                                 "samcell-rt.demo"}


def test_reader_opens_labels_with_their_cells_table(tmp_path, blob_path):
    from click.testing import CliRunner

    from samcell_rt.apps.napari.reader import get_reader
    from samcell_rt.cli import main

    tifffile.imwrite(tmp_path / "a.tif", as_dtype(synthetic_cells((260, 300), count=5, seed=2)[0], "uint16"))
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "a.tif"), "--model", str(blob_path), "--out",
                                       str(tmp_path / "o"), "--pixel-size", "0.4"])
    assert result.exit_code == 0, result.output
    assert get_reader(str(tmp_path / "a.tif")) is None
    ((labels, options, kind),) = get_reader(str(tmp_path / "o" / "a_labels.tif"))(str(tmp_path / "o" / "a_labels.tif"))
    assert kind == "labels" and labels.max() == 5 and options["name"] == "a cells"
    assert list(options["features"]["id"]) == [1, 2, 3, 4, 5] and options["scale"] == pytest.approx((0.4, 0.4))


def test_sample_data_is_the_demo_frame():
    from samcell_rt.apps.napari.sample import demo_image

    ((image, options, kind),) = demo_image()
    assert kind == "image" and image.ndim == 2 and image.dtype == np.uint16


def test_dock_widget_segments_rethresholds_and_saves_a_training_pair(tmp_path, blob_path, request):
    pytest.importorskip("napari", reason="the napari plugin needs the 'napari' extra")
    pytest.importorskip("qtpy.QtWidgets", reason="the napari widget needs Qt and the system libraries it loads")
    pytest.importorskip("pytestqt", reason="the widget test needs pytest-qt")
    qtbot = request.getfixturevalue("qtbot")
    from napari.components import ViewerModel

    from samcell_rt.apps.napari.widget import SegmentWidget

    viewer = ViewerModel()
    image = as_dtype(synthetic_cells((260, 300), count=6, seed=4)[0], "uint16")
    viewer.add_image(image, name="well")
    widget = SegmentWidget(viewer)
    qtbot.addWidget(widget)
    widget.model_edit.setText(str(blob_path))
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=10_000)
    assert widget.labels_layer.data.max() == 6 and widget.table.rowCount() == 6
    assert widget.progress.value() == 1 and "6 cells" in widget.status.text()
    widget.peak.setValue(0.99)  # post-processing only: no peak stands out that much
    assert widget.labels_layer.data.max() == 0
    widget.peak.setValue(0.47)
    corrected = widget.labels_layer.data.copy()
    corrected[corrected == 1] = 0  # the user deletes one cell with napari's tools
    widget.labels_layer.data = corrected
    image_path, labels_path = widget.save_training_pair(str(tmp_path))
    np.testing.assert_array_equal(tifffile.imread(image_path), image)
    assert tifffile.imread(labels_path).max() == 6 and not (tifffile.imread(labels_path) == 1).any()
