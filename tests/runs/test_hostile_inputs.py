"""Hostile inputs to folder runs, one regression test per defect found by attacking the CLI:
clashing names, outputs fed back as inputs, lying headers, compressed TIFFs, broken models,
unwritable folders, fake calibration, file modes, engine files on the wrong engine."""

from __future__ import annotations

import csv
import os
import stat
import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from samcell_rt.cli import main
from samcell_rt.synthetic import as_dtype, broken_model, synthetic_cells


def cli(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    return result


def summary(out):
    with open(out / "summary.csv", newline="") as handle:
        return {os.path.basename(r["file"]): r for r in csv.DictReader(handle)}


def cells_image(seed=0, count=6, shape=(260, 300)):
    return as_dtype(synthetic_cells(shape, count=count, seed=seed)[0], "uint16")


def test_same_name_from_two_folders_never_overwrites(tmp_path, blob_path):
    """colA/plate.tif then colB/plate.tif into one --out: refused, A's outputs and manifest stay true."""
    for folder, count in (("colA", 3), ("colB", 7)):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "plate.tif", cells_image(count=count, seed=count))
    out = tmp_path / "out"
    assert cli("segment", tmp_path / "colA" / "plate.tif", "--model", blob_path, "--out", out).exit_code == 0
    first = tifffile.imread(out / "plate_labels.tif")
    result = cli("segment", tmp_path / "colB" / "plate.tif", "--model", blob_path, "--out", out)
    assert result.exit_code == 2 and "would overwrite the outputs of" in result.output
    np.testing.assert_array_equal(tifffile.imread(out / "plate_labels.tif"), first)
    again = cli("segment", tmp_path / "colA" / "plate.tif", "--model", blob_path, "--out", out)
    assert again.exit_code == 0 and "1 already done" in again.output
    assert summary(out)["plate.tif"]["cells"] == "3"
    both = cli("segment", tmp_path / "colA" / "plate.tif", tmp_path / "colB" / "plate.tif", "--model", blob_path,
               "--out", tmp_path / "o2")
    assert both.exit_code == 2 and "same name stem" in both.output
    taken = cli("segment", tmp_path / "colB" / "plate.tif", "--model", blob_path, "--out", out, "--overwrite")
    assert taken.exit_code == 0 and summary(out)["plate.tif"]["cells"] == "7"


def test_output_folder_inside_or_equal_to_input_folder(tmp_path, blob_path):
    """Outputs written into the input folder are never read back as inputs on the next run."""
    for i in range(2):
        tifffile.imwrite(tmp_path / f"img{i}.tif", cells_image(seed=i))
    for _ in range(2):
        result = cli("segment", tmp_path, "--model", blob_path, "--out", tmp_path, "--overwrite")
        assert result.exit_code == 0, result.output
        assert sorted(summary(tmp_path)) == ["img0.tif", "img1.tif"]
    assert not list(tmp_path.glob("*_labels_labels.tif")) and not list(tmp_path.glob("*_overlay_*"))
    nested = tmp_path / "out"
    assert cli("segment", tmp_path, "--model", blob_path, "--out", nested).exit_code == 0
    assert sorted(summary(nested)) == ["img0.tif", "img1.tif"]


def png_claiming(path, width, height):
    """A real 8x8 PNG whose IHDR (with a valid CRC) claims another size."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_png_with_a_lying_header_fails_alone(tmp_path, blob_path):
    png_claiming(tmp_path / "a_huge.png", 100_000, 100_000)
    tifffile.imwrite(tmp_path / "b_fine.tif", cells_image())
    result = cli("segment", tmp_path, "--model", blob_path, "--out", tmp_path / "out")
    rows = summary(tmp_path / "out")
    assert result.exit_code == 1
    assert rows["a_huge.png"]["status"] == "failed" and "100000 x 100000" in rows["a_huge.png"]["error"]
    assert rows["b_fine.tif"]["status"] == "ok"


def patch_tag(path, tag, value):
    """Rewrite one tag's value field (SHORT values in place, anything else as a LONG / offset) in the first IFD."""
    data = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        code, kind = struct.unpack("<HH", data[entry : entry + 4])
        if code == tag:
            data[entry + 8 : entry + 12] = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    path.write_bytes(bytes(data))


def test_tiled_tiff_with_a_lying_header_is_refused_fast_and_stale_parts_go(tmp_path, blob_path):
    tifffile.imwrite(tmp_path / "lying.tif", np.zeros((512, 512), np.uint8), tile=(256, 256))
    for tag in (256, 257):  # ImageWidth, ImageLength
        patch_tag(tmp_path / "lying.tif", tag, 100_000)
    with tifffile.TiffFile(tmp_path / "lying.tif") as tif:
        assert tif.series[0].shape == (100_000, 100_000)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".lying_labels.tif.k2j4h1.part"
    stale.write_bytes(b"left by a killed run")
    result = cli("segment", tmp_path / "lying.tif", "--model", blob_path, "--out", out)
    assert result.exit_code == 1 and "above the limit" in summary(out)["lying.tif"]["error"]
    assert "--max-pixels" in summary(out)["lying.tif"]["error"] and not stale.exists()


def test_plate_progress_reaches_the_total(tmp_path, blob_path):
    from samcell_rt import load_model
    from samcell_rt.runs.folders import RunOptions, segment_files

    tifffile.imwrite(tmp_path / "p.tif", cells_image(shape=(600, 500)), tile=(256, 256))
    calls = []
    outcomes = segment_files([tmp_path / "p.tif"], tmp_path / "out", load_model(str(blob_path)),
                             RunOptions(plate_pixels=100_000), progress=lambda d, t: calls.append((d, t)))
    assert outcomes[0].ok and calls[-1] == (9, 9) and [d for d, _ in calls] == [3, 6, 9]


def test_plate_honours_percentile_scaling_and_pixel_size(tmp_path, blob_path):
    """The banded path uses the run's scaling and pixel size (once silently ignored)."""
    from samcell_rt import load_model
    from samcell_rt.runs.folders import RunOptions, segment_files

    image = cells_image(shape=(600, 500), count=12).astype(np.float32)
    image[0, 0] = 1e9  # one hot pixel: the range scaling would flatten every cell
    tifffile.imwrite(tmp_path / "p.tif", image, tile=(256, 256))
    options = RunOptions(pixel_size_um=0.5, plate_pixels=100_000)
    plain = segment_files([tmp_path / "p.tif"], tmp_path / "a", load_model(str(blob_path)), options)[0].rows[0]
    robust = segment_files([tmp_path / "p.tif"], tmp_path / "b", load_model(str(blob_path), scaling="percentile"),
                           options)[0].rows[0]
    assert plain.cells == 0 and robust.cells == 12
    assert robust.mean_area_um2 == pytest.approx(robust.mean_area_px * 0.25, rel=1e-5)
    assert robust.pixel_size_source == "option"


@pytest.mark.parametrize("compression", ["lzw", "deflate", "jpeg"])
def test_compressed_tiffs_are_read(tmp_path, blob_path, compression):
    image = as_dtype(synthetic_cells((260, 300), count=6, seed=1)[0], "uint8")
    tifffile.imwrite(tmp_path / "c.tif", image, compression=compression)
    result = cli("segment", tmp_path / "c.tif", "--model", blob_path, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert summary(tmp_path / "out")["c.tif"]["cells"] == "6"


@pytest.mark.parametrize("value, crop, message", [(float("nan"), 0, "NaN"), (2.0, 0, r"\[2, 2\]"),
                                                  (0.5, 10, "same shape")])
def test_broken_model_output_is_a_usage_error(tmp_path, value, crop, message):
    import re

    model = broken_model(tmp_path / "broken.onnx", value, crop)
    for i in range(2):
        tifffile.imwrite(tmp_path / f"i{i}.tif", cells_image(seed=i))
    result = cli("segment", tmp_path / "i0.tif", tmp_path / "i1.tif", "--model", model, "--out", tmp_path / "out")
    assert result.exit_code == 2 and re.search(message, result.output), result.output
    assert "broken.onnx" in result.output
    assert (tmp_path / "out" / "summary.csv").exists() and not list((tmp_path / "out").glob("*_labels.tif"))


def test_unwritable_output_is_refused_before_any_work(tmp_path, blob_path, monkeypatch):
    tifffile.imwrite(tmp_path / "i.tif", cells_image())
    (tmp_path / "afile").write_text("not a folder")
    result = cli("segment", tmp_path / "i.tif", "--model", blob_path, "--out", tmp_path / "afile" / "out")
    assert result.exit_code == 2 and "cannot be written" in result.output
    from samcell_rt.runs import folders

    def refuse(self, data):  # root ignores permission bits: refuse the probe write instead
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.Path, "write_bytes", refuse)
    result = cli("segment", tmp_path / "i.tif", "--model", blob_path, "--out", tmp_path / "ro")
    assert result.exit_code == 2 and "Permission denied" in result.output


def test_only_microscope_calibration_counts(tmp_path, blob_path):
    image = cells_image()
    tifffile.imwrite(tmp_path / "dpi72.tif", image, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "cm.tif", image, resolution=(1e4 / 0.65, 1e4 / 0.65), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "ij.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    assert cli("segment", tmp_path, "--model", blob_path, "--out", tmp_path / "out").exit_code == 0
    rows = summary(tmp_path / "out")
    assert rows["dpi72.tif"]["pixel_size_um"] == "" and rows["dpi72.tif"]["mean_area_um2"] == ""
    assert rows["cm.tif"]["pixel_size_source"] == "tiff-resolution"
    assert float(rows["cm.tif"]["pixel_size_um"]) == pytest.approx(0.65)
    assert rows["ij.tif"]["pixel_size_source"] == "imagej" and float(rows["ij.tif"]["pixel_size_um"]) == 0.5
    with open(tmp_path / "out" / "dpi72_cells.csv") as handle:
        assert "area_um2" not in handle.readline()


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_respect_the_umask(tmp_path, blob_path, mask):
    from samcell_rt.runtime import atomic

    tifffile.imwrite(tmp_path / "i.tif", cells_image())
    old = os.umask(mask)
    atomic._umask.cache_clear()
    try:
        assert cli("segment", tmp_path / "i.tif", "--model", blob_path, "--out", tmp_path / "out").exit_code == 0
    finally:
        os.umask(old)
        atomic._umask.cache_clear()
    for name in ("i_labels.tif", "i_overlay.png", "i_cells.csv", "summary.csv", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o666 & ~mask, name


def test_engine_file_on_the_cpu_engine(tmp_path):
    tifffile.imwrite(tmp_path / "i.tif", cells_image())
    (tmp_path / "m.engine").write_bytes(b"SAMCELLTRT")
    result = cli("segment", tmp_path / "i.tif", "--model", tmp_path / "m.engine", "--out", tmp_path / "out",
                 "--engine", "cpu")
    assert result.exit_code == 2 and "use --engine tensorrt or auto" in result.output


def test_tiff_reader_warnings_are_reported_once(tmp_path, blob_path):
    tifffile.imwrite(tmp_path / "w.tif", cells_image(), description="x" * 64, metadata=None)
    patch_tag(tmp_path / "w.tif", 270, 10**8)  # ImageDescription's value offset points past the end
    result = cli("segment", tmp_path / "w.tif", "--model", blob_path, "--out", tmp_path / "out")
    assert result.exit_code == 0
    assert result.output.count("invalid value offset") == 1 and "warning: " in result.output


def test_second_run_on_a_busy_folder_is_refused(tmp_path, blob_path):
    import fcntl

    from samcell_rt.runs.folders import LOCK

    tifffile.imwrite(tmp_path / "i.tif", cells_image())
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = cli("segment", tmp_path / "i.tif", "--model", blob_path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "in use by another samcell-rt run" in result.output


def test_stack_frame_overlays_and_a_file_named_like_them_never_share_a_name(tmp_path, blob_path):
    """A two-frame stack a.tif writes a_f0000_overlay.png, as would a file a_f0000.tif: refused,
    in one run and across runs into the same folder."""
    tifffile.imwrite(tmp_path / "a.tif", np.stack([cells_image(seed=1), cells_image(seed=2)]), photometric="minisblack")
    tifffile.imwrite(tmp_path / "a_f0000.tif", cells_image(seed=3))
    both = cli("segment", tmp_path / "a.tif", tmp_path / "a_f0000.tif", "--model", blob_path, "--out", tmp_path / "o")
    assert both.exit_code == 2 and "a_f0000_overlay.png" in both.output
    assert not (tmp_path / "o").exists()
    out = tmp_path / "o2"
    assert cli("segment", tmp_path / "a.tif", "--model", blob_path, "--out", out).exit_code == 0
    overlay = (out / "a_f0000_overlay.png").read_bytes()
    later = cli("segment", tmp_path / "a_f0000.tif", "--model", blob_path, "--out", out)
    assert later.exit_code == 2 and "would overwrite the outputs of" in later.output
    assert (out / "a_f0000_overlay.png").read_bytes() == overlay


def test_disk_full_on_summary_is_one_error_line(tmp_path, blob_path, monkeypatch):
    import errno

    from samcell_rt.runs import summary

    real = summary.write_text_atomic

    def full(path, text):
        if os.path.basename(path) == "summary.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(summary, "write_text_atomic", full)
    tifffile.imwrite(tmp_path / "a.tif", cells_image())
    result = cli("segment", tmp_path / "a.tif", "--model", blob_path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "summary.csv" in result.output and "No space left" in result.output


@pytest.mark.parametrize("content, message", [
    (b"name,count\nx,1\n", "no column"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "binary"),
    (b"file,frame,cells,confluency,status\na.tif,0,many,0.1,ok\n", "cells is 'many', not a number"),
])
def test_report_on_a_bad_summary_is_one_error_line(tmp_path, content, message):
    (tmp_path / "summary.csv").write_bytes(content)
    result = cli("report", tmp_path)
    assert result.exit_code == 2 and message in result.output and "summary.csv" in result.output


def test_build_engine_on_a_corrupt_onnx_or_below_a_file_fails_first(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 this is no protobuf \xff\xff")
    corrupt = cli("build-engine", tmp_path / "bad.onnx", "--out", tmp_path / "x.engine")
    assert corrupt.exit_code == 2 and "not a readable ONNX model" in corrupt.output
    (tmp_path / "afile").write_text("")
    blocked = cli("build-engine", "samcell-lite", "--out", tmp_path / "afile" / "sub" / "x.engine")
    assert blocked.exit_code == 2 and "afile is a file, not a folder" in blocked.output


def test_plate_path_reports_skipped_outputs_and_reader_warnings_once(tmp_path, blob_path, capfd):
    """--rois --geojson on the banded path used to write neither and say nothing; tifffile printed raw reprs."""
    from samcell_rt import load_model
    from samcell_rt.runs.folders import RunOptions, segment_files

    tifffile.imwrite(tmp_path / "p.tif", cells_image(shape=(600, 500)), tile=(256, 256), description="x" * 64,
                     metadata=None)
    patch_tag(tmp_path / "p.tif", 270, 10**8)  # ImageDescription's value offset points past the end
    options = RunOptions(plate_pixels=100_000, extras=("rois", "geojson"))
    (outcome,) = segment_files([tmp_path / "p.tif"], tmp_path / "out", load_model(str(blob_path)), options)
    assert outcome.ok and outcome.outputs == ["p_labels.tif"]
    assert [w for w in outcome.warnings if "--rois and --geojson not written" in w]
    assert sum("invalid value offset" in w for w in outcome.warnings) == 1
    assert "tifffile" not in capfd.readouterr().err


def test_report_with_missing_overlays_prints_nothing_from_opencv(tmp_path, blob_path, capfd):
    import subprocess
    import sys

    tifffile.imwrite(tmp_path / "a.tif", cells_image())
    assert cli("segment", tmp_path / "a.tif", "--model", blob_path, "--out", tmp_path / "out").exit_code == 0
    (tmp_path / "out" / "a_overlay.png").unlink()
    run = subprocess.run([sys.executable, "-m", "samcell_rt.cli", "report", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "WARN" not in run.stderr and "imread" not in run.stderr, run.stderr
