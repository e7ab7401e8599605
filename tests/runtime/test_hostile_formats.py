"""Hostile OME-Zarr stores and colour layouts (issue 37): malformed NGFF metadata, stores that inflate
(zip members, chunks far larger than the image, millions of tiny chunks), unusable pixel sizes, and
fluorescence channels that must never be mixed. Every case is one ImageReadError naming the file, or a
warning, decided from metadata before anything is inflated."""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest
import tifffile

from samcell_rt.errors import ImageReadError
from samcell_rt.runs.plates import is_plate
from samcell_rt.runtime.io import read_image
from samcell_rt.runtime.ome_zarr import group_kind

zarr = pytest.importorskip("zarr")


def v2_store(path, data=None, attrs=None, shape=(32, 40), chunks=(16, 20), dtype="u2", compressor="default",
             fill_value=0):
    """An NGFF 0.4 (zarr v2) image whose .zattrs is exactly `attrs` (written by hand, so it can be any JSON)."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    options = {} if compressor == "default" else {"compressors": None}
    array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value, **options)
    if data is not None:
        array[...] = data
    meta = {"multiscales": [{"version": "0.4", "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                                                        {"name": "x", "type": "space", "unit": "micrometer"}],
                             "datasets": [{"path": "0", "coordinateTransformations": [
                                 {"type": "scale", "scale": [0.5, 0.5]}]}]}]}
    (path / ".zattrs").write_text(json.dumps(meta if attrs is None else attrs))
    return path


def good_meta():
    return json.loads(json.dumps({"multiscales": [{"version": "0.4", "axes": ["y", "x"], "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.5]}]}]}]}))


def malformed(change):
    meta = good_meta()
    change(meta)
    return meta


MALFORMED = {
    "multiscales entry a string": {"multiscales": ["0"]},
    "datasets entry a string": malformed(lambda m: m["multiscales"][0].__setitem__("datasets", ["0"])),
    "datasets null": malformed(lambda m: m["multiscales"][0].__setitem__("datasets", None)),
    "dataset path a number": malformed(lambda m: m["multiscales"][0]["datasets"][0].__setitem__("path", 0)),
    "dataset path names a group": malformed(lambda m: m["multiscales"][0]["datasets"][0].__setitem__("path", "")),
    "null scale": malformed(lambda m: m["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
                            .__setitem__("scale", None)),
    "scale of strings": malformed(lambda m: m["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
                                  .__setitem__("scale", ["a", "b"])),
    "transformations a string": malformed(lambda m: m["multiscales"][0]["datasets"][0]
                                          .__setitem__("coordinateTransformations", "scale")),
    "axes not a list": malformed(lambda m: m["multiscales"][0].__setitem__("axes", "yx")),
    "axes of numbers": malformed(lambda m: m["multiscales"][0].__setitem__("axes", [1, 2])),
    "no y axis": malformed(lambda m: m["multiscales"][0].__setitem__("axes", ["c", "x"])),
    "x axis twice": malformed(lambda m: m["multiscales"][0].__setitem__("axes", ["x", "x"])),
    "ome not an object": {"ome": 5, "multiscales": "x"},
    "plate wells not a list": {"plate": {"wells": 7}},
    "well images a string": {"well": {"images": "0"}},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_ngff_metadata_is_one_read_error_naming_the_file(tmp_path, case):
    store = v2_store(tmp_path / "bad.ome.zarr", attrs=MALFORMED[case])
    group_kind(store)  # the folder scan runs on every input first: it must not raise either
    assert is_plate(store, 0) is False
    with pytest.raises(ImageReadError) as caught:
        read_image(store)
    assert str(store) in str(caught.value) and caught.value.cause


@pytest.mark.parametrize("document", ["[]", "[1, 2]", "7", "null", '{"attributes": [1]}', "not json"])
def test_zarr_json_holding_junk_is_a_read_error(tmp_path, document):
    store = tmp_path / "v3.ome.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(document)
    assert group_kind(store) == ""
    assert is_plate(store, 0) is False
    with pytest.raises(ImageReadError, match="v3.ome.zarr"):
        read_image(store)


def test_the_valid_store_these_cases_break_reads(tmp_path):
    """The control: the same store with good metadata reads, so each case above fails for its damage."""
    data = np.arange(32 * 40, dtype=np.uint16).reshape(32, 40)
    stack = read_image(v2_store(tmp_path / "ok.ome.zarr", data, attrs=good_meta()))
    assert np.array_equal(stack.frames[0], data) and stack.pixel_size_um == 0.5


def test_sparse_store_of_one_pixel_chunks_is_refused_before_reading(tmp_path):
    """2048 x 2048 declared in 1 x 1 chunks with no chunk files: 4 million chunks, a few KB on disk."""
    store = v2_store(tmp_path / "sparse.ome.zarr", shape=(2048, 2048), chunks=(1, 1))
    with pytest.raises(ImageReadError, match=r"sparse\.ome\.zarr.*4,194,304 chunks of 1 x 1.*rechunk"):
        read_image(store)
    from samcell_rt.runs.plates import LazyImage

    with pytest.raises(ImageReadError, match="4,194,304 chunks"):  # the banded plate path reads the same store
        LazyImage(store, max_pixels=1 << 30)


def test_chunks_far_larger_than_the_image_are_refused(tmp_path):
    """A 64 x 64 image in one 16384 x 16384 chunk would decode 256 M pixels to read 4096."""
    store = v2_store(tmp_path / "wide.ome.zarr", shape=(64, 64), chunks=(16384, 16384), dtype="u1")
    with pytest.raises(ImageReadError, match="chunks are far larger than the image"):
        read_image(store)


def test_ordinary_chunking_still_reads(tmp_path):
    """Edge chunks and a few thousand chunks stay within the bounds: the limits refuse abuse, not data."""
    data = (np.arange(300 * 310) % 65521).astype(np.uint16).reshape(300, 310)
    for chunks in ((256, 256), (7, 7), (512, 512)):
        path = tmp_path / f"c{chunks[0]}.ome.zarr"
        assert np.array_equal(read_image(v2_store(path, data, shape=data.shape, chunks=chunks)).frames[0], data)


def zipped(store, archive, inflate_member: tuple[str, int] | None = None):
    """`store` zipped (deflated); `inflate_member` replaces one member by that many zero bytes."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                name = str(file.relative_to(store.parent))
                if inflate_member and name.endswith(inflate_member[0]):
                    handle.writestr(name, bytes(inflate_member[1]))
                else:
                    handle.write(file, name)
    return archive


def peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_zip_member_inflating_beyond_its_chunk_is_refused_before_inflating(tmp_path):
    """A 64 x 64 uint8 chunk (4 KB) whose zip member inflates to 48 MB: refused from the zip directory."""
    store = v2_store(tmp_path / "z.ome.zarr", np.ones((64, 64), np.uint8), shape=(64, 64), chunks=(64, 64),
                     dtype="u1", compressor=None)
    archive = zipped(store, tmp_path / "bomb.zarr.zip", ("z.ome.zarr/0/0.0", 48 << 20))
    assert archive.stat().st_size < 1 << 20
    caught = []

    def read():
        with pytest.raises(ImageReadError, match=r"bomb\.zarr\.zip.*would inflate to 50,331,648 bytes") as error:
            read_image(archive)
        caught.append(error)

    assert peak_bytes(read) < 8 << 20 and caught
    intact = zipped(store, tmp_path / "ok.zarr.zip")
    assert read_image(intact).frames[0].sum() == 64 * 64


def test_decoded_bytes_limit_holds_memory_under_it(tmp_path):
    """A 4096 x 4096 uint8 store of ones zips to a few KB but decodes to 16 MB: with a 2 MB limit on
    decoded data (the service's upload limit) it is refused before any chunk is inflated, and the read's
    peak memory stays far below what decoding would take; without the limit the same read decodes it."""
    store = v2_store(tmp_path / "big.ome.zarr", np.ones((4096, 4096), np.uint8), shape=(4096, 4096),
                     chunks=(4096, 4096), dtype="u1", compressor=None)
    archive = zipped(store, tmp_path / "big.zarr.zip")
    assert archive.stat().st_size < 1 << 20

    def limited():
        with pytest.raises(ImageReadError, match=r"decodes 16\.0 MB .* above the 2 MB limit on decoded data"):
            read_image(archive, max_bytes=2 << 20)

    assert peak_bytes(limited) < 4 << 20
    assert peak_bytes(lambda: read_image(archive)) > 16 << 20  # the bound above is a real difference


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0.0, -0.5, 1e300, 1e-300, 10 ** 400])
def test_unusable_pixel_size_in_a_store_is_unknown_with_a_warning(tmp_path, scale):
    meta = good_meta()
    meta["multiscales"][0]["axes"] = [{"name": "y", "unit": "micrometer"}, {"name": "x", "unit": "micrometer"}]
    meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [scale, scale]
    stack = read_image(v2_store(tmp_path / "s.ome.zarr", attrs=meta))
    assert stack.pixel_size_um is None and stack.pixel_size_source == ""
    assert any("not taken as a pixel size" in w for w in stack.warnings), stack.warnings


def test_unusable_pixel_size_from_any_reader_is_unknown(tmp_path, monkeypatch):
    """The check sits in read_image itself, so a container reader's NaN or inf never passes either."""
    from samcell_rt.runtime import io
    from samcell_rt.runtime.planes import Planes

    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    for value in (float("nan"), float("inf"), 1e300):
        monkeypatch.setattr(io, "_read_tiff", lambda p, limits, v=value: Planes(np.zeros((8, 8), np.uint8), "YX", v,
                                                                                "ome"))
        stack = read_image(path)
        assert stack.pixel_size_um is None and any("taken as unknown" in w for w in stack.warnings)


@pytest.mark.parametrize("count", [3, 4])
def test_fluorescence_channels_are_never_mixed(tmp_path, count):
    data = np.stack([np.full((32, 40), 10 * (c + 1), np.uint16) for c in range(count)])
    meta = good_meta()
    meta["multiscales"][0]["axes"] = ["c", "y", "x"]
    meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [1, 0.5, 0.5]
    store = v2_store(tmp_path / "fl.ome.zarr", data, attrs=meta, shape=data.shape, chunks=(1, 16, 20))
    with pytest.raises(ImageReadError, match=rf"fl\.ome\.zarr: image has {count} channels; .*--channel N"):
        read_image(store)
    assert read_image(store, channel=2).frames[0, 0, 0] == 30
    tifffile.imwrite(tmp_path / "fl.ome.tif", data, metadata={"axes": "CYX"})  # an OME-TIFF channel axis too
    with pytest.raises(ImageReadError, match=f"{count} channels"):
        read_image(tmp_path / "fl.ome.tif")


def test_czi_gray16_with_three_channels_needs_a_channel(tmp_path):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    from tests.formats_files import write_czi

    planes = np.stack([np.full((24, 30), 100 * (c + 1), np.uint16) for c in range(3)])[None, None]
    path = write_czi(tmp_path / "three.czi", planes)
    with pytest.raises(ImageReadError, match=r"three\.czi: image has 3 channels; .*--channel N"):
        read_image(path)
    assert read_image(path, channel=1).frames[0, 0, 0] == 200


def test_true_rgb_keeps_working_and_says_it_used_luma(tmp_path):
    import cv2

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # 124
    cv2.imwrite(str(tmp_path / "photo.png"), rgb[..., ::-1])  # OpenCV writes BGR
    tifffile.imwrite(tmp_path / "photo.tif", rgb, photometric="rgb")
    for name in ("photo.png", "photo.tif"):
        stack = read_image(tmp_path / name)
        assert stack.frames[0, 0, 0] == expected
        assert any("luma" in w and "--channel" in w for w in stack.warnings), (name, stack.warnings)
    assert not read_image(tmp_path / "photo.tif", channel=0).warnings  # a chosen channel mixes nothing


@pytest.mark.parametrize("dtype", ["<U4", "V8", "M8[s]", "c8"])
def test_pixels_that_are_no_numbers_are_a_read_error(tmp_path, dtype):
    """Text, records, dates or complex values in a store would fail deep in preprocessing with a bare
    ValueError, which stops a whole batch; the reader refuses them by name instead."""
    store = v2_store(tmp_path / "odd.ome.zarr", dtype=dtype, fill_value=None if dtype == "V8" else 0)
    with pytest.raises(ImageReadError, match=r"odd\.ome\.zarr: pixels of type"):
        read_image(store)


def test_zip_of_too_many_members_is_refused_from_its_end_record(tmp_path, monkeypatch):
    """Millions of empty entries fit in an upload but their parsed directory would not fit in memory:
    the count comes from the end record, before the directory is parsed (a small limit stands in here)."""
    from samcell_rt.runtime import ome_zarr

    store = v2_store(tmp_path / "many.ome.zarr")
    archive = zipped(store, tmp_path / "many.zarr.zip")
    with zipfile.ZipFile(archive, "a") as handle:
        for i in range(300):
            handle.writestr(f"junk/{i}", b"")
    assert ome_zarr._zip_count(archive) == len(zipfile.ZipFile(archive).namelist())
    monkeypatch.setattr(ome_zarr, "MAX_ZIP_MEMBERS", 200)
    monkeypatch.setattr(zipfile.ZipFile, "__init__", None)  # parsing the directory would fail the test
    with pytest.raises(ImageReadError, match=r"many\.zarr\.zip: zip holds 30\d members, more than the 200"):
        read_image(archive)
