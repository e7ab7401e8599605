"""Resumable folder runs: skip what is done, redo on parameter change, survive kill -9."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells


def make_folder(folder, count=4, size=(300, 300)):
    folder.mkdir()
    for i in range(count):
        tifffile.imwrite(folder / f"img{i:02d}.tif", as_dtype(synthetic_cells(size, count=6 + i, seed=i)[0], "uint16"))


def segment(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "samcell_rt.cli", "segment", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def summary(out):
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_second_run_skips_and_parameter_change_redoes(tmp_path, blob_path):
    make_folder(tmp_path / "in")
    out = tmp_path / "out"
    first = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out))
    assert first.returncode == 0 and "0 already done" in first.stderr
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
    again = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out))
    assert again.returncode == 0 and "4 already done" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")} == stamps  # nothing rewritten
    assert [r["cells"] for r in summary(out)] == ["6", "7", "8", "9"]  # summary complete from the manifest
    changed = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out), "--peak", "0.6")
    assert "0 already done" in changed.stderr
    forced = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out), "--peak", "0.6", "--overwrite")
    assert "0 already done" in forced.stderr
    (out / "img02_labels.tif").unlink()  # a missing output makes its input count as not done
    partial = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out), "--peak", "0.6")
    assert "3 already done" in partial.stderr and (out / "img02_labels.tif").exists()


def test_killed_run_restarts_without_losing_or_corrupting_outputs(tmp_path, blob_path):
    make_folder(tmp_path / "in", count=12, size=(700, 700))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "samcell_rt.cli", "segment", str(tmp_path / "in"), "-m",
                             str(blob_path), "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*_labels.tif"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*_labels.tif")))
    assert 3 <= done_before < 12, "the run must be killed part-way"
    for labels in out.glob("*_labels.tif"):  # whatever exists under a final name is complete
        assert tifffile.imread(labels).shape == (700, 700)
    rerun = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(out))
    assert rerun.returncode == 0, rerun.stderr
    rows = summary(out)
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    assert [int(r["cells"]) for r in rows] == [6 + i for i in range(12)]
    assert not list(out.glob(".*.part"))
    reference = segment(str(tmp_path / "in"), "-m", str(blob_path), "-o", str(tmp_path / "clean"))
    assert reference.returncode == 0
    for labels in (tmp_path / "clean").glob("*_labels.tif"):
        np.testing.assert_array_equal(tifffile.imread(labels), tifffile.imread(out / labels.name))
