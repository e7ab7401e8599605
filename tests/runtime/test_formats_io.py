"""CZI, ND2, LIF and OME-Zarr reading: frames, channels, pixel size, time, and clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from samcell_rt.errors import ImageReadError
from samcell_rt.runtime.io import read_image
from tests.formats_files import PIXEL_UM, nd2_sample, write_czi, write_lif, write_ome_zarr, write_plate

RNG = np.random.default_rng(7)


def planes(*shape):
    return RNG.integers(0, 4000, shape).astype(np.uint16)


def test_czi_scenes_time_channels_and_pixel_size(tmp_path):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    data = planes(2, 3, 2, 40, 50)  # scenes, T, C, Y, X
    path = write_czi(tmp_path / "a.czi", data)
    for channel in (0, 1):
        stack = read_image(path, channel=channel)
        assert np.array_equal(stack.frames, data[:, :, channel].reshape(-1, 40, 50))  # scene-major, then time
        assert stack.pixel_size_um == pytest.approx(PIXEL_UM) and stack.pixel_size_source == "czi"
        assert stack.time_unit == ""  # scenes and time both move: no time series
    with pytest.raises(ImageReadError, match="2 channels; choose one"):
        read_image(path)
    one_scene = read_image(write_czi(tmp_path / "t.czi", data[:1, :, :1]))
    assert one_scene.frames.shape == (3, 40, 50) and one_scene.time_unit == "frame"


def test_czi_without_scaling_is_uncalibrated(tmp_path):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    stack = read_image(write_czi(tmp_path / "a.czi", planes(1, 1, 1, 20, 30), pixel_um=None))
    assert stack.pixel_size_um is None and stack.pixel_size_source == ""


def test_czi_scenes_of_different_sizes_are_refused_by_name(tmp_path):
    pylib = pytest.importorskip("pylibCZIrw.czi", reason="CZI needs the 'formats' extra")
    path = tmp_path / "mixed.czi"
    with pylib.create_czi(str(path)) as writer:
        writer.write(planes(20, 30), plane={"C": 0}, scene=0)
        writer.write(planes(25, 30), plane={"C": 0}, scene=1, location=(100, 0))
    with pytest.raises(ImageReadError, match=r"mixed.czi: its 2 scenes differ in size \(20x30, 25x30\).*--scene N"):
        read_image(path)
    assert read_image(path, scene=1).frames.shape == (1, 25, 30)
    with pytest.raises(ImageReadError, match=r"--scene 2 out of range: the file has 2 scenes \(0..1\)"):
        read_image(path, scene=2)


def test_scene_picks_one_scene_image_or_position(tmp_path):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    data = planes(3, 2, 1, 20, 30)
    czi = write_czi(tmp_path / "s.czi", data)
    assert np.array_equal(read_image(czi, scene=2).frames, data[2, :, 0])
    lif = write_lif(tmp_path / "s.lif", [data[0, :, 0], data[1, :, 0]])
    assert np.array_equal(read_image(lif, scene=1).frames, data[1, :, 0])
    tiff = tmp_path / "s.tif"
    import tifffile

    tifffile.imwrite(tiff, data[0, 0, 0])
    assert read_image(tiff, scene=0).frames.shape == (1, 20, 30)  # 0 is every file's only scene
    with pytest.raises(ImageReadError, match="--scene 1 asked for, but this file has no scenes"):
        read_image(tiff, scene=1)


def test_lif_images_with_different_pixel_sizes_are_refused(tmp_path):
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    first = write_lif(tmp_path / "a.lif", [planes(1, 20, 30)], pixel_um=0.65)
    second = write_lif(tmp_path / "b.lif", [planes(1, 20, 30)], pixel_um=0.325)
    import liffile

    from samcell_rt.runtime.containers import lif_planes

    with liffile.LifFile(first) as a, liffile.LifFile(second) as b:
        assert lif_planes([a.images[0]]).pixel_size_um == pytest.approx(0.65)
        assert lif_planes([b.images[0]]).pixel_size_um == pytest.approx(0.325)
    mixed = tmp_path / "mixed.lif"
    write_lif(mixed, [planes(1, 20, 30), planes(1, 20, 30)], pixel_um=[0.65, 0.325])
    with pytest.raises(ImageReadError, match=r"2 images differ in pixel size \(um\) \(0.65, 0.325\)"):
        read_image(mixed)
    assert read_image(mixed, scene=1).pixel_size_um == pytest.approx(0.325)


def test_nd2_position_by_scene_on_the_readers_own_sizes():
    pytest.importorskip("nd2", reason="ND2 needs the 'formats' extra")
    from samcell_rt.runtime.containers import nd2_planes

    data = planes(2, 3, 10, 12)  # T, P, Y, X

    class Positions:
        sizes = {"T": 2, "P": 3, "Y": 10, "X": 12}
        experiment = []
        metadata = None

        def voxel_size(self):
            return None

        def asarray(self):
            return data

    got = nd2_planes(Positions(), scene=1)
    assert np.array_equal(got.data, data[:, 1:2]) and got.pixel_size_um is None
    assert (got.frame_interval, got.time_unit) == (None, "frame")  # one position left: the frames are a time series again


def test_nd2_sample_from_a_registry_package():
    pytest.importorskip("nd2", reason="ND2 needs the 'formats' extra")
    sample = nd2_sample()
    if sample is None:
        pytest.skip("pims_nd2 (test data: its cluster.nd2) is not installed; scripts/setup-test-env.sh installs it")
    import nd2

    expected = nd2.imread(sample)  # (T, Z, C, Y, X) by the reader itself
    stack = read_image(sample, channel=1)
    assert stack.frames.shape == (30, 31, 38)
    assert np.array_equal(stack.frames, expected[:, :, 1].reshape(30, 31, 38))
    assert stack.pixel_size_um == pytest.approx(0.16780898, rel=1e-6) and stack.pixel_size_source == "nd2"
    assert stack.time_unit == ""  # time and Z both move


def test_nd2_time_loop_interval_from_the_readers_own_objects():
    pytest.importorskip("nd2", reason="ND2 needs the 'formats' extra")
    from nd2._util import VoxelSize
    from nd2.structures import PeriodDiff, TimeLoop, TimeLoopParams

    from samcell_rt.runtime.containers import nd2_planes

    data = planes(4, 10, 12)

    class Timelapse:  # what an ND2File of a plain time-lapse reports (sizes, voxel size, loops)
        sizes = {"T": 4, "Y": 10, "X": 12}
        experiment = [TimeLoop(count=4, nestingLevel=0, parameters=TimeLoopParams(
            startMs=0.0, periodMs=30000.0, durationMs=0.0, periodDiff=PeriodDiff(avg=29500.0, max=0, min=0)))]
        metadata = None

        def voxel_size(self):
            return VoxelSize(0.325, 0.325, 1.0)

        def asarray(self):
            return data

    got = nd2_planes(Timelapse())
    assert got.axes == "TYX" and np.array_equal(got.data, data)
    assert (got.pixel_size_um, got.source) == (0.325, "nd2")
    assert (got.frame_interval, got.time_unit) == (29.5, "s")  # the measured mean period wins over the set one


def test_lif_images_time_and_pixel_size(tmp_path):
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    timelapse = planes(3, 20, 30)
    stack = read_image(write_lif(tmp_path / "t.lif", [timelapse], interval_s=5.0))
    assert np.array_equal(stack.frames, timelapse)
    assert stack.pixel_size_um == pytest.approx(PIXEL_UM) and stack.pixel_size_source == "lif"
    assert (stack.frame_interval, stack.time_unit) == (pytest.approx(5.0), "s")  # Length 10 s over 3 frames
    two = read_image(write_lif(tmp_path / "two.lif", [timelapse, timelapse[::-1]]))
    assert np.array_equal(two.frames, np.concatenate([timelapse, timelapse[::-1]])) and two.time_unit == ""


def test_ome_zarr_image_both_ngff_versions(tmp_path):
    data = planes(3, 2, 30, 40)
    for version in ("0.4", "0.5"):
        path = tmp_path / f"v{version}.ome.zarr"
        write_ome_zarr(path, data, "tcyx", [60.0, 1.0, PIXEL_UM, PIXEL_UM], version=version)
        stack = read_image(path, channel=1)
        assert np.array_equal(stack.frames, data[:, 1])
        assert stack.pixel_size_um == pytest.approx(PIXEL_UM) and stack.pixel_size_source == "ome-zarr"
        assert (stack.frame_interval, stack.time_unit) == (60.0, "s")


def test_ome_zarr_nanometres_and_missing_units(tmp_path):
    import json

    path = tmp_path / "nm.ome.zarr"
    write_ome_zarr(path, planes(30, 40), "yx", [650.0, 650.0])
    meta = json.loads((path / "zarr.json").read_text())
    for axis in meta["attributes"]["ome"]["multiscales"][0]["axes"]:
        axis["unit"] = "nanometer"
    (path / "zarr.json").write_text(json.dumps(meta))
    assert read_image(path).pixel_size_um == pytest.approx(PIXEL_UM)
    for axis in meta["attributes"]["ome"]["multiscales"][0]["axes"]:
        del axis["unit"]
    (path / "zarr.json").write_text(json.dumps(meta))
    stack = read_image(path)  # no unit: OME's default, micrometres
    assert stack.pixel_size_um == pytest.approx(650.0) and stack.pixel_size_source == "ome-zarr"
    meta["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [1.0, 1.0]
    (path / "zarr.json").write_text(json.dumps(meta))
    stack = read_image(path)  # scale 1 without a unit: a writer's default, no calibration
    assert stack.pixel_size_um is None and "x axis has no unit and scale 1" in stack.warnings[0]
    for axis in meta["attributes"]["ome"]["multiscales"][0]["axes"]:
        axis["unit"] = "parsec"
    (path / "zarr.json").write_text(json.dumps(meta))
    assert read_image(path).pixel_size_um is None  # an unknown unit is never guessed


def test_zipped_ome_zarr_reads_like_the_folder(tmp_path):
    data = planes(30, 40)
    write_ome_zarr(tmp_path / "img.ome.zarr", data, "yx", [PIXEL_UM, PIXEL_UM])
    archive = shutil.make_archive(str(tmp_path / "img.ome.zarr"), "zip", tmp_path, "img.ome.zarr")
    stack = read_image(archive)
    assert np.array_equal(stack.frames[0], data) and stack.pixel_size_um == pytest.approx(PIXEL_UM)


def test_plate_is_not_an_image(tmp_path):
    plate = write_plate(tmp_path / "p.ome.zarr", {"A/1": [planes(20, 20)]})
    with pytest.raises(ImageReadError, match="is an OME-Zarr plate, not an image"):
        read_image(plate)


@pytest.mark.parametrize("kind", ["czi", "nd2", "lif", "ome-zarr", "zip"])
def test_corrupt_file_of_each_format_names_it(tmp_path, kind):
    pytest.importorskip({"czi": "pylibCZIrw", "nd2": "nd2", "lif": "liffile"}.get(kind, "zarr"))
    if kind == "ome-zarr":
        path = tmp_path / "bad.ome.zarr"
        write_ome_zarr(path, planes(30, 40), "yx", [PIXEL_UM, PIXEL_UM], chunks=(10, 40))
        next(p for p in (path / "s0").rglob("*") if p.is_file()).write_bytes(b"\x00garbage")  # a damaged chunk
    else:
        path = tmp_path / f"bad.{kind}"
        good = {"czi": lambda p: write_czi(p, planes(1, 1, 1, 20, 30)),
                "lif": lambda p: write_lif(p, [planes(1, 20, 30)])}.get(kind)
        if good is not None:  # a truncated real file
            content = good(tmp_path / f"good.{kind}").read_bytes()
            path.write_bytes(content[: len(content) // 2])
        else:
            path.write_bytes(b"not really a microscope file" * 10)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_extra_is_named(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_liffile(name, *args, **kwargs):
        if name == "liffile":
            raise ImportError("No module named 'liffile'", name="liffile")
        return real_import(name, *args, **kwargs)

    path = tmp_path / "x.lif"
    path.write_bytes(b"LIF")
    monkeypatch.setattr(builtins, "__import__", no_liffile)
    with pytest.raises(ImageReadError, match=r"needs the 'formats' extra: pip install \"samcell-rt\[formats\]\""):
        read_image(path)


def test_ome_zarr_claiming_a_huge_array_is_refused_before_reading(tmp_path):
    import json

    path = tmp_path / "liar.ome.zarr"
    write_ome_zarr(path, planes(30, 40), "yx", [PIXEL_UM, PIXEL_UM])
    array_meta = path / "s0" / "zarr.json"
    meta = json.loads(array_meta.read_text())
    meta["shape"] = [200_000, 200_000]
    array_meta.write_text(json.dumps(meta))
    with pytest.raises(ImageReadError, match="liar.ome.zarr: header claims 200000 x 200000"):
        read_image(path)


def test_czi_mosaic_tiles_are_composed_into_their_scene(tmp_path):
    pylib = pytest.importorskip("pylibCZIrw.czi", reason="CZI needs the 'formats' extra")
    left, right = planes(20, 30), planes(20, 30)
    with pylib.create_czi(str(tmp_path / "mosaic.czi")) as writer:
        writer.write(left, plane={"C": 0}, scene=0, location=(0, 0))
        writer.write(right, plane={"C": 0}, scene=0, location=(30, 0))
    assert np.array_equal(read_image(tmp_path / "mosaic.czi").frames[0], np.hstack([left, right]))
