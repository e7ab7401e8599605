"""The napari dock widget: segment the selected image layer with any samcell-rt model and engine.

The model is loaded once per (model, engine) and runs in a worker thread with a progress bar, so
napari stays responsive. Results become a Labels layer (the per-cell table as its features and in
the dock); the peak and fill controls re-run only the post-processing on the kept distance maps.
After correcting the labels with napari's brushes, "Save as training pair" writes the image and the
corrected labels in the layout `samcell-rt train --data` reads, and "Retrain on saved pairs" runs
`samcell-rt adapt` on that folder as a subprocess (apps never import the training code) in a worker
thread, shows its progress, and switches the widget to the adapted model. Only the lean runtime is used.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...errors import SamcellError
from ...runs.training_pairs import write_training_pair
from ...runtime.engines import CHOICES
from ...runtime.io import rgb_to_gray
from ...runtime.segmenter import Result, Segmenter

TABLE_COLUMNS = ("id", "area", "circularity", "aspect_ratio", "neighbours", "mean_intensity")


class SegmentWidget(QWidget):
    """Dock widget: image layer, model, engine, thresholds, run, per-cell table, save training pair."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._segmenters: dict[tuple[str, str], Segmenter] = {}
        self.results: list[Result] = []
        self.labels_layer = None
        self.image_layer = None
        self.image_box, self.model_edit, self.engine_box = QComboBox(), QLineEdit(), QComboBox()
        self.model_edit.setPlaceholderText("shipped samcell-lite (or an .onnx path / model name)")
        self.engine_box.addItems(CHOICES)
        self.peak, self.fill = _threshold_box("peak"), _threshold_box("fill")
        self.run_button, self.save_button = QPushButton("Segment"), QPushButton("Save as training pair")
        self.retrain_button, self.minutes = QPushButton("Retrain on saved pairs"), _minutes_box()
        self.pairs_folder: str | None = None
        self.adapt_command = [sys.executable, "-m", "samcell_rt.cli", "adapt"]  # the CLI, as a subprocess
        self.adapt_options: list[str] = []  # further `samcell-rt adapt` options (e.g. --init CHECKPOINT)
        self.progress, self.status, self.table = QProgressBar(), QLabel(""), QTableWidget()
        self._layout()
        self.run_button.clicked.connect(self.run)
        self.save_button.clicked.connect(self.save_training_pair)
        self.retrain_button.clicked.connect(self.retrain)
        self.peak.valueChanged.connect(self.rethreshold)
        self.fill.valueChanged.connect(self.rethreshold)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    def _layout(self) -> None:
        form = QFormLayout()
        for label, widget in (("Image", self.image_box), ("Model", self.model_edit), ("Engine", self.engine_box),
                              ("Peak", self.peak), ("Fill", self.fill), ("Retrain minutes", self.minutes)):
            form.addRow(label, widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.run_button, self.progress, self.status, self.table, self.save_button, self.retrain_button):
            layout.addWidget(widget)
        self.save_button.setEnabled(False)

    def _refresh_layers(self, *_) -> None:
        from napari.layers import Image

        current = self.image_box.currentText()
        self.image_box.clear()
        self.image_box.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, Image)])
        if current:
            self.image_box.setCurrentText(current)

    def segmenter(self) -> Segmenter:
        """The Segmenter for the chosen model and engine (loaded once)."""
        from ... import load_model

        key = (self.model_edit.text().strip(), self.engine_box.currentText())
        if key not in self._segmenters:
            self._segmenters[key] = load_model(key[0] or None, key[1])
        return self._segmenters[key]

    def frames(self) -> np.ndarray:
        """The selected image layer as gray frames (N, H, W)."""
        self.image_layer = self.viewer.layers[self.image_box.currentText()]
        data = np.asarray(self.image_layer.data)
        if self.image_layer.rgb:
            data = rgb_to_gray(data)
        return data.reshape((-1,) + data.shape[-2:])

    def run(self):
        """Segment the selected layer in a worker thread; returns the worker (tests wait on it)."""
        from napari.qt.threading import create_worker

        if not self.image_box.currentText():
            self.status.setText("Open or drop an image first.")
            return None
        frames = self.frames()
        self.run_button.setEnabled(False)
        self.progress.setRange(0, len(frames))
        self.progress.setValue(0)
        self.status.setText("loading model…")
        worker = create_worker(self._segment, frames, _progress={"total": len(frames)})
        worker.yielded.connect(self.progress.setValue)
        worker.returned.connect(self._show)
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.run_button.setEnabled(True))
        worker.start()
        return worker

    def _segment(self, frames: np.ndarray):
        segmenter = self.segmenter()
        results = []
        for result in segmenter.segment_many(frames):
            results.append(result)
            yield len(results)
        return results, segmenter

    def _show(self, outcome: tuple[list[Result], Segmenter]) -> None:
        self.results, segmenter = outcome
        self.active = segmenter
        self.peak.blockSignals(True)
        self.fill.blockSignals(True)
        self.peak.setValue(segmenter.peak)
        self.fill.setValue(segmenter.fill)
        self.peak.blockSignals(False)
        self.fill.blockSignals(False)
        self._publish()

    def _failed(self, error: Exception) -> None:
        self.status.setText(f"failed: {error}")

    def rethreshold(self, *_) -> None:
        """New peak/fill: post-processing only, on the kept distance maps."""
        if not self.results:
            return
        frames = self.frames()
        self.results = [self.active.relabel(r, self.peak.value(), self.fill.value(), intensity=frame)
                        for r, frame in zip(self.results, frames)]
        self._publish()

    def labels(self) -> np.ndarray:
        stack = np.stack([r.labels for r in self.results])
        return stack if len(self.results) > 1 else stack[0]

    def _publish(self) -> None:
        name = f"{self.image_layer.name} cells"
        features = {k: v for k, v in self.results[0].cells.items() if np.ndim(v) == 1} if len(self.results) == 1 else {}
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            self.labels_layer.data = self.labels()
            self.labels_layer.features = features
        else:
            self.labels_layer = self.viewer.add_labels(self.labels(), name=name, features=features)
        counts = [int(r.metrics["cells"]) for r in self.results]
        self.status.setText(f"{'/'.join(map(str, counts))} cells (peak {self.peak.value():.2f}, fill "
                            f"{self.fill.value():.2f}; engine {self.active.engine_name})")
        self._fill_table()
        self.save_button.setEnabled(True)

    def _fill_table(self) -> None:
        cells = self.results[0].cells
        columns = [c for c in TABLE_COLUMNS if c in cells]
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setRowCount(len(cells["id"]))
        for column, name in enumerate(columns):
            for row, value in enumerate(cells[name]):
                self.table.setItem(row, column, QTableWidgetItem(f"{value:.4g}" if isinstance(value, float) else str(value)))

    def save_training_pair(self, folder: str | None = None):
        """Write the image and the (corrected) labels layer as a training pair; returns the two paths."""
        folder = folder or QFileDialog.getExistingDirectory(self, "Folder for training pairs")
        if not folder or self.labels_layer is None:
            return None
        paths = write_training_pair(folder, self.image_layer.name, np.asarray(self.image_layer.data),
                                    np.asarray(self.labels_layer.data), rgb=self.image_layer.rgb)
        self.pairs_folder = str(folder)
        self.status.setText(f"saved {paths[0].name} + {paths[1].name}")
        return paths

    def retrain(self, folder: str | None = None):
        """Adapt the current model to the saved training pairs (`samcell-rt adapt` in a subprocess, run
        from a worker thread); on success the widget uses the new model. Returns the worker."""
        from napari.qt.threading import create_worker

        folder = folder or self.pairs_folder or QFileDialog.getExistingDirectory(self, "Folder of training pairs")
        if not folder:
            return None
        out = Path(folder) / f"adapted-{time.strftime('%Y%m%d-%H%M%S')}.onnx"
        command = [*self.adapt_command, str(folder), "--out", str(out),
                   "--minutes", f"{self.minutes.value():g}", *self.adapt_options]
        if self.model_edit.text().strip():
            command += ["--model", self.model_edit.text().strip()]
        self.retrain_button.setEnabled(False)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status.setText(f"adapting to the pairs in {folder}…")
        worker = create_worker(run_adapt, command, _progress={"total": 100}, _ignore_errors=True)  # shown in the dock
        worker.yielded.connect(self.progress.setValue)
        worker.returned.connect(lambda table: self._adapted(out, table))
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.retrain_button.setEnabled(True))
        worker.start()
        return worker

    def _adapted(self, model: Path, table: str) -> None:
        self.model_edit.setText(str(model))
        self.progress.setValue(100)
        self.status.setText(f"now using {model.name}\n{table}")


def run_adapt(command: list[str]):
    """Run an adapt command, yielding its progress (0-100, read from its progress bar); return its
    report. A failure raises with the command's own error line."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail = b""
    while chunk := process.stderr.read1(4096):
        tail = (tail + chunk)[-4096:]
        percents = re.findall(rb"(\d+)%\|", chunk)
        if percents:
            yield int(percents[-1])
    report = process.stdout.read().decode(errors="replace")
    if process.wait() != 0:
        lines = [line for line in re.split(r"[\r\n]", tail.decode(errors="replace")) if line.strip()]
        errors = [line for line in lines if line.startswith("error")]
        # not RuntimeError: superqt's generator workers take that for an aborted thread and return None
        raise SamcellError((errors or lines or [f"adapt exited with {process.returncode}"])[-1])
    return report.strip()


def _minutes_box() -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0.1, 120.0)
    box.setValue(10.0)
    box.setDecimals(1)
    box.setToolTip("Time budget for retraining (the whole run: training, threshold choice, export)")
    return box


def _threshold_box(name: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(0.0, 1.0)
    box.setSingleStep(0.01)
    box.setDecimals(2)
    box.setToolTip({"peak": "How clearly a cell centre must stand out to start a cell (raise if cells are split)",
                    "fill": "How far a cell reaches from its centre (lower if outlines are too tight)"}[name])
    return box
