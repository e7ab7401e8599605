"""Folder runs over CZI, LIF, OME-Zarr images and HCS plates: the same labels as TIFF, the pixel
size in summary.csv, wells from the plate layout, corrupt files reported, NGFF labels written back."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from samcell_rt.errors import InputError
from samcell_rt.runs.folders import RunOptions, expand_inputs
from samcell_rt.runs.zarr_labels import LABELS_NAME, write_labels
from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.formats_files import PIXEL_UM, write_czi, write_lif, write_ome_zarr, write_plate
from tests.helpers import same_up_to_renumbering
from tests.reports.folder_run import segment_and_derive


def cells(seed: int, shape=(96, 128)) -> np.ndarray:
    return as_dtype(synthetic_cells(shape, count=6, radius=9, seed=seed)[0], "uint16")


def summary(out):
    with open(out / "summary.csv", newline="") as handle:
        return {r["file"]: r for r in csv.DictReader(handle)}


def run(inputs, out, segmenter, **options):
    return segment_and_derive(expand_inputs([str(i) for i in inputs], out), out, segmenter, RunOptions(**options))


def test_same_image_through_tiff_and_each_container_gives_identical_labels(tmp_path, segmenter):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    image, other = cells(1), cells(2)
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "frame.tif", image, resolution=(1 / PIXEL_UM, 1 / PIXEL_UM), imagej=True,
                     metadata={"unit": "um"})
    write_czi(src / "frame_czi.czi", image[None, None, None])
    write_lif(src / "frame_lif.lif", [image[None]])
    write_ome_zarr(src / "frame_zarr.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    write_plate(src / "plate.ome.zarr", {"A/1": [image], "B/2": [other]})
    out = tmp_path / "out"
    outcomes = run([src], out, segmenter)
    assert all(o.ok for o in outcomes), [o.rows for o in outcomes]
    reference = tifffile.imread(out / "frame_labels.tif")
    assert reference.max() >= 5
    for stem in ("frame_czi", "frame_lif", "frame_zarr", "plate_A01_f0"):
        assert np.array_equal(tifffile.imread(out / f"{stem}_labels.tif"), reference), stem
    rows = summary(out)
    for name, source in (("frame_czi.czi", "czi"), ("frame_lif.lif", "lif"), ("frame_zarr.ome.zarr", "ome-zarr"),
                         ("plate.ome.zarr/A/1/0", "ome-zarr"), ("frame.tif", "imagej")):
        row = rows[str(src / name)]
        assert (float(row["pixel_size_um"]), row["pixel_size_source"]) == (pytest.approx(PIXEL_UM), source), name


def test_plate_wells_come_from_the_layout_not_the_name(tmp_path, segmenter):
    plate = write_plate(tmp_path / "P7.ome.zarr", {"A/1": [cells(1), cells(3)], "B/2": [cells(2)]})
    out = tmp_path / "out"
    # a well pattern that matches nothing in these names: the wells still come from the plate
    run([plate], out, segmenter, well_pattern=r"(?P<row>Z)(?P<col>99)")
    assert sorted(p.name for p in out.glob("*_labels.tif")) == ["P7_A01_f0_labels.tif", "P7_A01_f1_labels.tif",
                                                                 "P7_B02_f0_labels.tif"]
    with open(out / "plate_wells.csv", newline="") as handle:
        table = {r["well"]: r for r in csv.DictReader(handle)}
    rows = summary(out)
    assert set(table) == {"A01", "B02"} and table["A01"]["images"] == "2"
    a1 = [float(rows[str(plate / "A" / "1" / f)]["cells"]) for f in "01"]
    assert float(table["A01"]["cells"]) == pytest.approx(np.mean(a1))
    assert float(table["B02"]["cells"]) == float(rows[str(plate / "B" / "2" / "0")]["cells"])
    if importlib.util.find_spec("matplotlib"):  # the report finds each field's outputs by its stem
        from samcell_rt.reports.report import write_report

        page = write_report(out).read_text()
        assert all(f"P7_{name}_overlay.png" in page for name in ("A01_f0", "A01_f1", "B02_f0"))


def test_two_plates_with_the_same_name_are_refused(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_plate(tmp_path / folder / "P.ome.zarr", {"A/1": [cells(1)]})
    with pytest.raises(InputError, match="same name stem 'P_A01_f0'"):
        expand_inputs([str(tmp_path / "x" / "P.ome.zarr"), str(tmp_path / "y" / "P.ome.zarr")], tmp_path / "out")
    # a glob reaches stores too, and a folder holding a plate lists its fields
    assert expand_inputs([str(tmp_path / "x" / "*.ome.zarr")]) == [tmp_path / "x" / "P.ome.zarr" / "A" / "1" / "0"]
    assert expand_inputs([str(tmp_path / "y")]) == [tmp_path / "y" / "P.ome.zarr" / "A" / "1" / "0"]


def test_corrupt_file_of_each_format_is_reported_and_the_batch_goes_on(tmp_path, segmenter):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "good.tif", cells(1))
    for suffix in (".czi", ".nd2", ".lif"):
        (src / f"bad_{suffix[1:]}{suffix}").write_bytes(b"\x00" * 64)
    write_ome_zarr(src / "bad_zarr.ome.zarr", cells(2), "yx", [PIXEL_UM, PIXEL_UM])
    broken = src / "bad_zarr.ome.zarr" / "s0"
    for chunk in (p for p in broken.rglob("*") if p.is_file() and p.name != "zarr.json"):
        chunk.write_bytes(b"broken")
    plate = write_plate(src / "plate.ome.zarr", {"A/1": [cells(3)], "B/2": [cells(4)]})
    import shutil

    shutil.rmtree(plate / "B" / "2" / "0")  # a field the well lists but that is gone
    out = tmp_path / "out"
    outcomes = {str(o.path): o for o in run([src], out, segmenter)}
    assert outcomes[str(src / "good.tif")].ok and outcomes[str(plate / "A" / "1" / "0")].ok
    rows = summary(out)
    for name, message in (("bad_czi.czi", "not a readable CZI"), ("bad_nd2.nd2", "not a readable ND2"),
                          ("bad_lif.lif", "not a readable LIF"), ("bad_zarr.ome.zarr", "OME-Zarr"),
                          ("plate.ome.zarr/B/2/0", "does not exist")):
        row = rows[str(src / name)]
        assert row["status"] == "failed" and message in row["error"], (name, row["error"])


def image_digest(store) -> str:
    """Hash of every file of an OME-Zarr image except its labels group."""
    digest = hashlib.sha256()
    for path in sorted(p for p in store.rglob("*") if p.is_file() and "labels" not in p.relative_to(store).parts):
        digest.update(str(path.relative_to(store)).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_zarr_labels_are_ngff_labels_over_the_image(tmp_path, segmenter, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    stack = np.stack([cells(1), cells(2)])[:, None]  # t, c, y, x
    store = tmp_path / "t.ome.zarr"
    write_ome_zarr(store, stack, "tcyx", [30.0, 1.0, PIXEL_UM, PIXEL_UM], version=version)
    before = image_digest(store)
    out = tmp_path / "out"
    assert all(o.ok for o in run([store], out, segmenter, zarr_labels=LABELS_NAME))
    assert image_digest(store) == before  # the image's arrays and metadata are untouched
    ours = tifffile.imread(out / "t_labels.tif")
    nodes = list(Reader(parse_url(str(store)))())  # as a viewer finds them: from the image
    label = next(n for n in nodes if n.load(Label))
    assert f"labels/{LABELS_NAME}" in str(label.zarr)
    assert np.array_equal(np.asarray(label.data[0])[:, 0], ours)  # (t, 1, y, x), frames in order
    assert [a["name"] for a in label.metadata["axes"]] == ["t", "c", "y", "x"]
    assert not list((store / "labels").glob("*.tmp")) and not list((store / "labels").glob(".*.part"))  # no leftovers
    # a resumed run skips the image (writing labels did not make it look changed)
    assert all(o.skipped for o in run([store], out, segmenter, zarr_labels=LABELS_NAME))
    # redoing it needs the explicit replace flag, checked before any work
    with pytest.raises(InputError, match="--replace-zarr-labels"):
        run([store], out, segmenter, zarr_labels=LABELS_NAME, overwrite=True)
    assert all(o.ok for o in run([store], out, segmenter, zarr_labels=LABELS_NAME, overwrite=True,
                                 replace_zarr_labels=True))
    assert image_digest(store) == before


def test_killed_label_write_leaves_no_half_group(tmp_path, monkeypatch):
    import samcell_rt.runs.zarr_labels as zarr_labels

    store = tmp_path / "k.ome.zarr"
    write_ome_zarr(store, cells(1), "yx", [PIXEL_UM, PIXEL_UM])
    labels = np.arange(96 * 128, dtype=np.int32).reshape(96, 128) % 7

    def killed(tmp, final):
        raise KeyboardInterrupt  # the process dies after the data, before the rename

    monkeypatch.setattr(zarr_labels, "_swap_in", killed)
    with pytest.raises(KeyboardInterrupt):
        write_labels(store, labels)
    assert not (store / "labels" / LABELS_NAME).exists()
    monkeypatch.undo()
    write_labels(store, labels)
    import zarr

    assert np.array_equal(zarr.open_group(str(store / "labels" / LABELS_NAME), mode="r")["0"][:], labels)
    assert sorted(p.name for p in (store / "labels").iterdir()) == [LABELS_NAME, "zarr.json"]
    with pytest.raises(FileExistsError, match="--replace-zarr-labels"):
        write_labels(store, labels)
    write_labels(store, labels + 1, replace=True)
    assert zarr.open_group(str(store / "labels" / LABELS_NAME), mode="r")["0"][0, 0] == 1


def test_large_field_takes_the_banded_path_with_the_same_labels(tmp_path, segmenter):
    image = as_dtype(synthetic_cells((300, 200), count=12, radius=10, seed=5)[0], "uint16")
    plate = write_plate(tmp_path / "big.ome.zarr", {"C/3": [image]})
    tifffile.imwrite(tmp_path / "same.tif", image)
    out = tmp_path / "out"
    outcomes = run([plate, tmp_path / "same.tif"], out, segmenter, plate_pixels=200 * 200, zarr_labels=LABELS_NAME)
    assert all(o.ok for o in outcomes)
    banded = tifffile.imread(out / "big_C03_f0_labels.tif")
    assert banded.dtype == np.uint32  # the banded path's BigTIFF, not the in-memory writer's uint16
    assert same_up_to_renumbering(banded, tifffile.imread(out / "same_labels.tif"))
    import zarr

    written = zarr.open_group(str(plate / "C" / "3" / "0" / "labels" / LABELS_NAME), mode="r")["0"][:]
    assert np.array_equal(written, banded)


def test_cli_segments_a_plate_and_writes_zarr_labels(tmp_path, blob_path):
    plate = write_plate(tmp_path / "cli.ome.zarr", {"A/1": [cells(1)], "H/12": [cells(2)]})
    out = tmp_path / "out"
    args = [sys.executable, "-m", "samcell_rt.cli", "segment", str(plate), "--model", str(blob_path), "--out", str(out),
            "--zarr-labels"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (plate / "A" / "1" / "0" / "labels" / LABELS_NAME).is_dir()
    assert (out / "plate_cells.png").exists() and "H12" in (out / "plate_wells.csv").read_text()
    again = subprocess.run(args + ["--overwrite"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--replace-zarr-labels" in again.stderr


def test_plate_metadata_cannot_point_outside_the_store(tmp_path):
    import json

    plate = write_plate(tmp_path / "evil.ome.zarr", {"A/1": [cells(1)]})
    write_ome_zarr(tmp_path / "outside.ome.zarr", cells(2), "yx", [PIXEL_UM, PIXEL_UM])
    meta = json.loads((plate / "A" / "1" / "zarr.json").read_text())
    meta["attributes"]["ome"]["well"]["images"] += [{"path": "../../../outside.ome.zarr"}, {"path": "/etc"}]
    (plate / "A" / "1" / "zarr.json").write_text(json.dumps(meta))
    assert expand_inputs([str(plate)], tmp_path / "out") == [plate / "A" / "1" / "0"]


def test_time_increments_feed_the_timelines(tmp_path, segmenter):
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    frames = np.stack([cells(s) for s in (1, 2, 3)])
    write_ome_zarr(tmp_path / "grow.ome.zarr", frames, "tyx", [600.0, PIXEL_UM, PIXEL_UM])  # every 10 min
    write_lif(tmp_path / "lapse.lif", [frames], interval_s=30.0)
    out = tmp_path / "out"
    assert all(o.ok for o in run([tmp_path / "grow.ome.zarr", tmp_path / "lapse.lif"], out, segmenter))
    rows = [r for r in summary_rows(out) if r["file"].endswith("grow.ome.zarr")]
    assert [(float(r["time"]), r["time_unit"]) for r in rows] == [(0.0, "s"), (600.0, "s"), (1200.0, "s")]
    lif = [r for r in summary_rows(out) if r["file"].endswith("lapse.lif")]
    assert [float(r["time"]) for r in lif] == [0.0, 30.0, 60.0]
    with open(out / "grow_timeline.csv", newline="") as handle:
        timeline = list(csv.DictReader(handle))
    assert [float(r["cells"]) for r in timeline] == [float(r["cells"]) for r in rows]
    assert (out / "lapse_timeline.csv").exists()


def summary_rows(out):
    with open(out / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_scene_option_runs_one_scene_and_is_recorded(tmp_path, segmenter):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    import json

    image = cells(4)
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(tmp_path / "two.czi")) as writer:  # scenes of two sizes
        writer.write(cells(5)[:, :100], plane={"C": 0}, scene=0)
        writer.write(image, plane={"C": 0}, scene=1, location=(200, 0))
    out = tmp_path / "out"
    (failed,) = run([tmp_path / "two.czi"], out, segmenter)
    assert not failed.ok and "--scene N" in failed.rows[0].error
    assert all(o.ok for o in run([tmp_path / "two.czi"], out, segmenter, scene=1))
    tifffile.imwrite(tmp_path / "one.tif", image)
    run([tmp_path / "one.tif"], tmp_path / "tif", segmenter)
    assert np.array_equal(tifffile.imread(out / "two_labels.tif"), tifffile.imread(tmp_path / "tif" / "one_labels.tif"))
    entry = json.loads((out / "manifest.json").read_text())["inputs"][str((tmp_path / "two.czi").resolve())]
    assert entry["params"]["scene"] == 1
