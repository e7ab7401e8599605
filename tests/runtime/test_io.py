"""Reading every supported layout, the colour rule, label writing, and clear errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from samcell_rt.errors import ImageReadError
from samcell_rt.runs.image_files import label_dtype, write_labels
from samcell_rt.runtime.io import read_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_tiff_dtypes_roundtrip(tmp_path, dtype):
    data = (np.arange(12 * 10).reshape(12, 10) * 3).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    stack = read_image(tmp_path / "a.tif")
    assert stack.frames.shape == (1, 12, 10)
    assert stack.frames.dtype == dtype
    np.testing.assert_array_equal(stack.frames[0], data)


def test_multipage_stack_keeps_order(tmp_path):
    frames = np.stack([np.full((8, 9), v, np.uint16) for v in (5, 700, 65000)])
    tifffile.imwrite(tmp_path / "s.tif", frames, photometric="minisblack")
    got = read_image(tmp_path / "s.tif").frames
    assert got.shape == (3, 8, 9)
    assert [int(f[0, 0]) for f in got] == [5, 700, 65000]


def test_ome_tiff_time_z_and_pixel_size(tmp_path):
    data = np.arange(2 * 3 * 6 * 7, dtype=np.uint16).reshape(2, 3, 6, 7)
    tifffile.imwrite(tmp_path / "x.ome.tif", data, metadata={"axes": "TZYX", "PhysicalSizeX": 0.65,
                                                           "PhysicalSizeXUnit": "µm"})
    stack = read_image(tmp_path / "x.ome.tif")
    assert stack.frames.shape == (6, 6, 7)
    np.testing.assert_array_equal(stack.frames[4], data[1, 1])
    assert stack.pixel_size_um == pytest.approx(0.65)


def test_resolution_tag_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "r.tif", np.zeros((4, 4), np.uint8), resolution=(10000 / 0.5, 10000 / 0.5),
                     resolutionunit="CENTIMETER")
    assert read_image(tmp_path / "r.tif").pixel_size_um == pytest.approx(0.5)


def test_rgb_becomes_bt601_luma(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (200, 0, 0)
    rgb[0, 1] = (0, 200, 0)
    rgb[1, 0] = (0, 0, 200)
    rgb[1, 1] = (100, 150, 50)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    got = read_image(tmp_path / "c.tif").frames[0]
    expected = [[round(0.299 * 200), round(0.587 * 200)], [round(0.114 * 200), round(0.299 * 100 + 0.587 * 150 + 0.114 * 50)]]
    np.testing.assert_array_equal(got, expected)


def test_png_rgba_and_channel_choice(tmp_path):
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 255
    cv2.imwrite(str(tmp_path / "p.png"), rgba[..., [2, 1, 0, 3]])  # OpenCV writes BGRA
    assert read_image(tmp_path / "p.png").frames[0, 0, 0] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)
    assert read_image(tmp_path / "p.png", channel=2).frames[0, 0, 0] == 30
    with pytest.raises(ImageReadError, match="out of range"):
        read_image(tmp_path / "p.png", channel=7)


def test_sixteen_bit_png_and_jpeg_and_bmp(tmp_path):
    data = np.array([[0, 1000], [40000, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), data)
    np.testing.assert_array_equal(read_image(tmp_path / "d.png").frames[0], data)
    gray = np.full((16, 16), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "j.jpg"), gray)
    cv2.imwrite(str(tmp_path / "b.bmp"), gray)
    assert abs(int(read_image(tmp_path / "j.jpg").frames[0, 8, 8]) - 128) <= 2
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp").frames[0], gray)


def test_multichannel_needs_a_channel(tmp_path):
    data = np.zeros((5, 6, 7), np.uint16)  # 5 fluorescence channels
    data[3] = 9
    tifffile.imwrite(tmp_path / "m.tif", data, metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match="5 channels; choose one"):
        read_image(tmp_path / "m.tif")
    assert read_image(tmp_path / "m.tif", channel=3).frames[0, 0, 0] == 9


def test_channel_on_gray_image_is_an_error(tmp_path):
    tifffile.imwrite(tmp_path / "g.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match="one channel"):
        read_image(tmp_path / "g.tif", channel=1)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.tif", b"", "file is empty"),
        ("text.tif", b"this is not an image\n" * 10, "not a readable TIFF"),
        ("text.png", b"not a png at all", "not a readable PNG"),
        ("notes.txt", b"hello", "unsupported file type"),
    ],
)
def test_bad_files_raise_one_error_type_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(tmp_path / name)
    assert name in str(info.value)


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.random.default_rng(0).integers(0, 60000, (300, 300), dtype=np.uint16))
    raw = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match="t.tif"):
        read_image(tmp_path / "t.tif")


def test_zero_size_image(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((0, 0), np.uint8))
    with pytest.raises(ImageReadError, match="z.tif"):
        read_image(tmp_path / "z.tif")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_labels_written_uint16_then_uint32_compressed(tmp_path):
    small = np.zeros((64, 64), np.int32)
    small[10:20, 10:20] = 65535
    write_labels(tmp_path / "s.tif", small)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.pages.first.dtype == np.uint16
        assert tif.pages.first.compression != 1  # 1 = uncompressed
        np.testing.assert_array_equal(tif.asarray(), small)
    big = small.copy()
    big[30, 30] = 70000
    assert label_dtype(big) == np.uint32
    write_labels(tmp_path / "b.tif", big)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tif"), big)
    assert not list(tmp_path.glob(".*part"))  # no temporary files left behind


def test_os_errors_become_read_errors(tmp_path, monkeypatch):
    """Permissions or I/O failures while reading are reported for that file, not raised raw."""
    path = tmp_path / "locked.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "fromfile", refuse)
    with pytest.raises(ImageReadError, match="locked.png: cannot be read \\(Permission denied\\)"):
        read_image(path)
