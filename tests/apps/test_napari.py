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


FAKE_ADAPT = """
import shutil, sys, time
args = sys.argv[1:]
out = args[args.index("--out") + 1]
for percent in (0, 30, 60, 90):
    sys.stderr.write(f"\\rtraining: {percent:3d}%|###| {percent}/100 s")
    sys.stderr.flush()
    time.sleep(0.2)
shutil.copy(sys.argv[0].replace("fake_adapt.py", "blob.onnx"), out)
print("model  SEG  DET  OP_CSB")
"""


def test_retrain_button_runs_adapt_as_a_subprocess_in_a_worker_and_switches_model(tmp_path, blob_path, request):
    pytest.importorskip("napari", reason="the napari plugin needs the 'napari' extra")
    pytest.importorskip("qtpy.QtWidgets", reason="the napari widget needs Qt and the system libraries it loads")
    pytest.importorskip("pytestqt", reason="the widget test needs pytest-qt")
    import shutil
    import sys
    import threading

    qtbot = request.getfixturevalue("qtbot")
    from napari.components import ViewerModel

    from samcell_rt.apps.napari import widget as widget_module

    script = tmp_path / "fake_adapt.py"  # stands in for `samcell-rt adapt` (tests/train/test_adapt.py runs the real one)
    script.write_text(FAKE_ADAPT)
    shutil.copy(blob_path, tmp_path / "blob.onnx")
    threads = []
    real_run_adapt = widget_module.run_adapt

    def recording_run_adapt(command):
        threads.append(threading.current_thread())
        return (yield from real_run_adapt(command))

    widget_module.run_adapt = recording_run_adapt
    try:
        viewer = ViewerModel()
        viewer.add_image(as_dtype(synthetic_cells((260, 300), count=6, seed=4)[0], "uint16"), name="well")
        widget = widget_module.SegmentWidget(viewer)
        qtbot.addWidget(widget)
        widget.adapt_command = [sys.executable, str(script)]
        values = []
        widget.progress.valueChanged.connect(values.append)
        (tmp_path / "pairs").mkdir()
        worker = widget.retrain(str(tmp_path / "pairs"))
        assert not widget.retrain_button.isEnabled()
        with qtbot.waitSignal(worker.finished, timeout=60_000):
            pass
    finally:
        widget_module.run_adapt = real_run_adapt
    assert threads and threads[0] is not threading.main_thread()
    assert 60 in values and values[-1] == 100 and widget.retrain_button.isEnabled()
    new_model = widget.model_edit.text()
    assert new_model.startswith(str(tmp_path / "pairs" / "adapted-")) and new_model.endswith(".onnx")
    assert "now using" in widget.status.text() and "OP_CSB" in widget.status.text()
    worker = widget.run()  # the widget segments with the adapted model
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: widget.labels_layer is not None, timeout=10_000)
    assert widget.labels_layer.data.max() == 6


def test_retrain_failure_shows_the_commands_error(tmp_path, request):
    pytest.importorskip("napari", reason="the napari plugin needs the 'napari' extra")
    pytest.importorskip("qtpy.QtWidgets", reason="the napari widget needs Qt and the system libraries it loads")
    pytest.importorskip("pytestqt", reason="the widget test needs pytest-qt")
    import sys

    qtbot = request.getfixturevalue("qtbot")
    from napari.components import ViewerModel

    from samcell_rt.apps.napari.widget import SegmentWidget

    widget = SegmentWidget(ViewerModel())
    qtbot.addWidget(widget)
    widget.adapt_command = [sys.executable, "-c", "import sys; sys.stderr.write('error: too few cells\\n'); sys.exit(2)"]
    worker = widget.retrain(str(tmp_path))
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert widget.status.text() == "failed: error: too few cells" and widget.retrain_button.isEnabled()
