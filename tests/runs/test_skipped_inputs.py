"""Nothing is left out silently (issue 37): a store folder without NGFF metadata, a listed well whose
folder is gone and plates with junk metadata each become a failed row in summary.csv and an `error:`
line, the rest of the batch still runs, and the exit code says a file failed. `--zarr-labels` on a
store it cannot write fails before anything is segmented."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from samcell_rt.errors import InputError
from samcell_rt.runs.folders import RunOptions, expand_inputs, segment_files
from samcell_rt.runs.zarr_inputs import input_stem, layout_well
from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.formats_files import PIXEL_UM, write_ome_zarr, write_plate

pytest.importorskip("zarr")


def cells(seed: int) -> np.ndarray:
    return as_dtype(synthetic_cells((96, 128), count=6, radius=9, seed=seed)[0], "uint16")


def summary(out) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def plate_meta(plate):
    document = json.loads((plate / "zarr.json").read_text())
    return document, document["attributes"]["ome"]["plate"]


def test_cli_reports_an_empty_store_and_a_gone_well_as_rows(tmp_path, blob_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_ome_zarr(folder / "good.ome.zarr", cells(1), "yx", [PIXEL_UM, PIXEL_UM])
    (folder / "empty.ome.zarr").mkdir()  # a store folder without multiscales (an interrupted copy)
    (folder / "empty.ome.zarr" / ".zattrs").write_text("{}")
    plate = write_plate(folder / "p.ome.zarr", {"A/1": [cells(2)], "B/2": [cells(3)]})
    shutil.rmtree(plate / "B" / "2")  # listed in the plate, gone on disk
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "segment", str(folder), "--model", str(blob_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # a file failed (errors.EXIT_FILE_FAILED)
    rows = summary(out)
    assert rows[str(folder / "good.ome.zarr")]["status"] == "ok"
    assert rows[str(plate / "A" / "1" / "0")]["status"] == "ok"
    empty, gone = rows[str(folder / "empty.ome.zarr")], rows[str(plate / "B" / "2")]
    assert empty["status"] == "failed" and "no NGFF image metadata" in empty["error"]
    assert gone["status"] == "failed" and "does not exist" in gone["error"]
    assert f"error: {folder / 'empty.ome.zarr'}: " in proc.stderr and f"error: {plate / 'B' / '2'}: " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_gone_wells_keep_distinct_stems_and_their_place(tmp_path):
    """Two gone wells in the same column must not collide on the stem "1" (which would stop the run)."""
    plate = write_plate(tmp_path / "p.ome.zarr", {"A/1": [cells(1)], "B/1": [cells(2)], "C/1": [cells(3)]})
    shutil.rmtree(plate / "A" / "1")
    shutil.rmtree(plate / "B" / "1")
    files = expand_inputs([str(plate)], tmp_path / "out")
    assert files == [plate / "A" / "1", plate / "B" / "1", plate / "C" / "1" / "0"]
    assert [input_stem(f) for f in files] == ["p_A01", "p_B01", "p_C01_f0"]
    assert layout_well(plate / "B" / "1") == (1, 1)


@pytest.mark.parametrize("damage", ["wells not a list", "wells empty", "column named ²", "rowIndex a string",
                                    "rowIndex negative", "rows not a list"])
def test_plate_metadata_junk_fails_alone(tmp_path, segmenter, damage):
    plate = write_plate(tmp_path / "p.ome.zarr", {"A/1": [cells(1)], "B/2": [cells(2)]})
    document, meta = plate_meta(plate)
    if damage == "wells not a list":
        meta["wells"] = 7
    elif damage == "wells empty":
        meta["wells"] = []
    elif damage == "column named ²":
        meta["columns"][0]["name"] = "\u00b2"
    elif damage == "rowIndex a string":
        meta["wells"][0]["rowIndex"] = "A"
    elif damage == "rowIndex negative":
        meta["wells"][0]["rowIndex"] = -1
    else:
        meta["rows"] = "AB"
    (plate / "zarr.json").write_text(json.dumps(document))
    write_ome_zarr(tmp_path / "other.ome.zarr", cells(4), "yx", [PIXEL_UM, PIXEL_UM])
    out = tmp_path / "out"
    outcomes = segment_files(expand_inputs([str(plate), str(tmp_path / "other.ome.zarr")], out), out, segmenter,
                             RunOptions())
    rows = summary(out)
    assert rows[str(tmp_path / "other.ome.zarr")]["status"] == "ok"  # the batch went on
    if damage.startswith("wells"):
        assert rows[str(plate)]["status"] == "failed" and "lists no wells" in rows[str(plate)]["error"]
    else:  # the fields still run; a well the layout cannot place is named by its folders
        assert all(o.ok for o in outcomes) and len(outcomes) == 3
        assert (out / "p_B2_f0_labels.tif").exists() or (out / "p_B02_f0_labels.tif").exists()
    if damage == "column named ²":  # placed by its index instead
        assert layout_well(plate / "A" / "1" / "0") == (0, 1)


def test_zarr_labels_into_a_store_it_cannot_write_fails_before_any_work(tmp_path, segmenter):
    store = write_ome_zarr(tmp_path / "ro.ome.zarr", cells(1), "yx", [PIXEL_UM, PIXEL_UM])
    store = tmp_path / "ro.ome.zarr"
    (store / "labels").write_text("a file where the labels group would go")  # unwritable even for root
    out = tmp_path / "out"
    files = expand_inputs([str(store)], out)
    with pytest.raises(InputError, match=r"ro\.ome\.zarr: --zarr-labels cannot write into this OME-Zarr store"):
        segment_files(files, out, segmenter, RunOptions(zarr_labels="samcell"))
    assert not [p for p in out.iterdir() if p.name.endswith(("_labels.tif", "_overlay.png"))]  # nothing segmented


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders; the labels-is-a-file case covers root")
def test_zarr_labels_into_a_read_only_store_fails_before_any_work(tmp_path, segmenter):
    write_ome_zarr(tmp_path / "ro.ome.zarr", cells(1), "yx", [PIXEL_UM, PIXEL_UM])
    store = tmp_path / "ro.ome.zarr"
    store.chmod(0o555)
    out = tmp_path / "out"
    try:
        with pytest.raises(InputError, match="cannot write into this OME-Zarr store"):
            segment_files(expand_inputs([str(store)], out), out, segmenter, RunOptions(zarr_labels="samcell"))
    finally:
        store.chmod(0o755)
    assert not [p for p in out.iterdir() if p.name.endswith(("_labels.tif", "_overlay.png"))]
