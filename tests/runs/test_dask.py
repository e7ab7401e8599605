"""Dask LocalCluster with 2 workers: same labels and summary as the serial run; failures reported."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells

pytest.importorskip("dask.distributed", reason="Dask runs need the 'dist' extra")


@pytest.fixture(scope="module")
def client():
    from samcell_rt.runs.dask import dask_client

    with dask_client(workers=2) as dask:
        yield dask


def test_files_on_two_workers_match_the_serial_run(tmp_path, blob_path, client):
    from samcell_rt import load_model
    from samcell_rt.runs.folders import segment_files

    (tmp_path / "in").mkdir()
    for i in range(5):
        tifffile.imwrite(tmp_path / "in" / f"w{i}.tif", as_dtype(synthetic_cells((300, 320), count=4 + i, seed=i)[0],
                                                                "uint16"))
    (tmp_path / "in" / "w9_broken.tif").write_text("nope")
    files = sorted((tmp_path / "in").iterdir())
    segmenter = load_model(str(blob_path))
    serial = segment_files(files, tmp_path / "serial", segmenter)
    cluster = segment_files(files, tmp_path / "dask", segmenter, client=client)
    assert [o.ok for o in cluster] == [o.ok for o in serial] == [True] * 5 + [False]

    def rows(folder):
        with open(folder / "summary.csv", newline="") as handle:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]

    assert rows(tmp_path / "dask") == rows(tmp_path / "serial")
    for i in range(5):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "dask" / f"w{i}_labels.tif"),
                                      tifffile.imread(tmp_path / "serial" / f"w{i}_labels.tif"))


def test_segment_many_with_client(blob_path, client):
    from samcell_rt import load_model
    from samcell_rt.runs.dask import segment_many

    segmenter = load_model(str(blob_path))
    images = [synthetic_cells((260, 300), count=3 + i, seed=i)[0] for i in range(4)] + [np.full((3, 3), np.nan)]
    remote = list(segment_many(client, segmenter, images, on_error="report"))
    local = list(segmenter.segment_many(images, on_error="report"))
    assert [r.key for r in remote] == [0, 1, 2, 3, 4] and [r.ok for r in remote] == [True] * 4 + [False]
    for a, b in zip(remote[:4], local[:4]):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_cli_workers_option(tmp_path, blob_path):
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "in" / f"p{i}.tif", as_dtype(synthetic_cells((260, 260), count=2 + i, seed=i)[0],
                                                                "uint8"))
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "segment", str(tmp_path / "in"), "-m", str(blob_path),
                           "-o", str(tmp_path / "out"), "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        assert [r["cells"] for r in csv.DictReader(handle)] == ["2", "3", "4"]


def test_workers_rebuild_the_segmenter_with_every_setting_threads_included(blob_path):
    from samcell_rt import load_model
    from samcell_rt.runs.dask import WorkerSettings, worker_segmenter

    given = load_model(str(blob_path), batch_size=3, peak=0.6, fill=0.2, threads=1, diameter="off")
    settings = WorkerSettings.of(given)
    rebuilt = worker_segmenter(settings)
    for name in ("batch_size", "peak", "fill", "threads", "scaling", "diameter", "engine_name"):
        assert getattr(rebuilt, name) == getattr(given, name), name
    assert worker_segmenter(WorkerSettings.of(given)) is rebuilt  # loaded once per settings
