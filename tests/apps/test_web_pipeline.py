"""The page's JavaScript (samcell_rt/apps/web/static) against the Python runtime it rewrites, run under Node.

The page must give the same cells as the command line, so every stage is compared with the
runtime's own function on the same input: scaling, tiles, CLAHE, blending, markers and watershed,
the cell table. The TIFF reader is checked on files tifffile writes, the writer by reading back
with tifffile, the outlines with shapely. Node stands in for the browser (same ECMAScript); the
browser itself is tested in test_web_page.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from samcell_rt.runtime.measure import cell_table
from samcell_rt.runtime.postprocess import labels_from_distance
from samcell_rt.runtime.preprocess import enhance_tiles, to_uint8
from samcell_rt.runtime.tiling import blend, extract_tiles, tile_grid
from samcell_rt.synthetic import as_dtype, synthetic_cells

STATIC = Path(__file__).resolve().parents[2] / "samcell_rt" / "apps" / "web" / "static"
HARNESS = Path(__file__).with_name("web_harness.mjs")
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (runs the page's modules outside a browser)")


def run_js(tmp_path: Path, op: str, array: np.ndarray, out_dtype, out_shape, **job) -> np.ndarray:
    """Run one pipeline op of the page on `array`, return its output array."""
    array.tofile(tmp_path / "in.bin")
    job = {"op": op, "input": str(tmp_path / "in.bin"), "output": str(tmp_path / "out.bin"), **job}
    (tmp_path / "job.json").write_text(json.dumps(job))
    subprocess.run([NODE, str(HARNESS), str(STATIC / "pipeline.js"), str(tmp_path / "job.json")], check=True, timeout=120)
    return np.fromfile(tmp_path / "out.bin", out_dtype).reshape(out_shape)


@pytest.fixture(scope="module")
def image16():
    """A 16-bit image with values far above 255 and hot pixels, not a multiple of the tile step in size."""
    image = as_dtype(synthetic_cells((300, 457), count=14, seed=5)[0], "uint16")
    image[7, 9], image[200, 3] = 65535, 0
    return image


@pytest.mark.parametrize("scaling", ["range", "percentile"])
def test_scaling_matches_runtime(tmp_path, image16, scaling):
    js = run_js(tmp_path, "to_uint8", image16, np.uint8, image16.shape, dtype="uint16", scaling=scaling)
    assert np.array_equal(js, to_uint8(image16, scaling))


@pytest.mark.parametrize("shape", [(300, 457), (100, 60), (449, 256)])
def test_tiles_match_runtime(tmp_path, shape):
    """Grid, reflect padding past the far edges, images smaller than a tile."""
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    grid = tile_grid(*shape)
    js = run_js(tmp_path, "tiles", image, np.uint8, (len(grid), 256, 256), width=shape[1], height=shape[0])
    assert np.array_equal(js, extract_tiles(image, grid))


def test_clahe_is_opencvs_bit_for_bit(tmp_path, image16):
    rng = np.random.default_rng(2)
    u8 = to_uint8(image16)
    tiles = np.concatenate([extract_tiles(u8, tile_grid(*u8.shape)), rng.integers(0, 256, (3, 256, 256), dtype=np.uint8),
                            rng.integers(90, 130, (2, 256, 256)).astype(np.uint8), np.full((1, 256, 256), 7, np.uint8)])
    js = run_js(tmp_path, "enhance", tiles, np.uint8, tiles.shape, tile=256)
    assert np.array_equal(js, enhance_tiles(tiles))


def test_blend_matches_runtime(tmp_path):
    shape = (300, 457)
    grid = tile_grid(*shape)
    maps = np.random.default_rng(3).random((len(grid), 256, 256), dtype=np.float32)
    js = run_js(tmp_path, "blend", maps, np.float32, shape, width=shape[1], height=shape[0])
    assert np.array_equal(js, blend(maps, grid))


def awkward_distance() -> np.ndarray:
    """A distance map with the marker rule's corner cases: single-pixel and straight-line peaks (no marker),
    a C-shaped peak whose centroid lies outside it, a peak inside another peak's hole (RETR_EXTERNAL: no
    marker of its own), peaks touching the image edge, a bent one-pixel line (zero area), plateaus."""
    d = np.zeros((120, 160), np.float32)
    yy, xx = np.mgrid[:120, :160]
    for cy, cx, r in [(20, 20, 14), (60, 70, 18), (95, 130, 16), (0, 150, 12), (100, 5, 10)]:
        d = np.maximum(d, np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, 1).astype(np.float32))
    d[40:44, 100:150] = 0.2  # fill-only band: flooded from nowhere, stays background
    d[5, 60], d[8, 62:70], d[10:18, 80] = 0.9, 0.9, 0.9  # single pixel, lines: no marker
    d[30, 120:125], d[31:35, 125] = 0.9, 0.9  # bent line: zero area, three or more corners
    ring = (np.hypot(yy - 60, xx - 70) < 12) & (np.hypot(yy - 60, xx - 70) > 8)
    d[ring & (xx < 76)] = 0.95  # C-shape
    d[58:62, 68:72] = 0.99  # inside the C's hole: no hole there, so its own marker; it merges with the C
    d[100:112, 40:52] = 0.6
    d[103:109, 43:49] = 0.3  # a ring-shaped peak's hole with a peak inside it
    d[105:107, 45:47] = 0.7
    d[60:64, 20:24] = 0.5  # a plateau exactly at fill level
    return d


@pytest.mark.parametrize("case", ["synthetic", "awkward"])
def test_labels_and_table_match_runtime(tmp_path, segmenter, case):
    """Markers, watershed and measurements: the same labels (same ids) and the same cell table."""
    if case == "synthetic":
        image = as_dtype(synthetic_cells((300, 457), count=25, radius=14, gap=-6, seed=7)[0], "uint16")
        distance, peak, fill = segmenter.segment(image).distance, segmenter.peak, segmenter.fill
    else:
        distance, peak, fill = awkward_distance(), 0.47, 0.09
    h, w = distance.shape
    js = run_js(tmp_path, "labels", distance, np.int32, (h, w), width=w, height=h, peak=peak, fill=fill,
                table=str(tmp_path / "table.json"))
    expected = labels_from_distance(distance, peak, fill)
    assert expected.max() >= 5
    assert np.array_equal(js, expected)
    table = json.loads((tmp_path / "table.json").read_text())
    reference = cell_table(expected)
    for column in ("id", "area", "centroid_y", "centroid_x", "perimeter", "circularity"):
        assert np.allclose([cell[column] for cell in table["cells"]], reference[column], rtol=1e-12, atol=1e-12), column
    shapely = pytest.importorskip("shapely.geometry")
    for cell_id, ring in table["rings"].items():
        polygon = shapely.Polygon(ring)
        assert polygon.is_valid, cell_id
        area = reference["area"][int(cell_id) - 1]
        # the 0.5 contour through pixel centres cuts each boundary pixel's outer half-corner
        assert area - reference["perimeter"][int(cell_id) - 1] <= polygon.area <= area


def test_tiff_reader_reads_what_tifffile_writes(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(4)
    stack = rng.integers(0, 65535, (3, 70, 90), dtype=np.uint16)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cases = {
        "lzw_predictor.tif": (stack, dict(photometric="minisblack", compression="lzw", predictor=True, rowsperstrip=16)),
        "packbits.tif": ((stack[0] >> 8).astype(np.uint8), dict(compression="packbits")),
        "tiled_zlib.tif": (stack[1], dict(compression="zlib", tile=(32, 32))),
        "plain_float.tif": (rng.random((30, 20), dtype=np.float32), {}),
        "rgb_lzw.tif": (rgb, dict(photometric="rgb", compression="lzw")),
        "imagej_um.tif": (stack[2], dict(imagej=True, resolution=(1 / 0.65, 1 / 0.65), metadata={"unit": "um"})),
        "centimetre.tif": (stack[2], dict(resolution=(10000 / 0.5, 10000 / 0.5), resolutionunit="CENTIMETER")),
    }
    for name, (data, options) in cases.items():
        tifffile.imwrite(tmp_path / name, data, **options)
    job = {"op": "tiff", "files": [str(tmp_path / name) for name in cases], "output": str(tmp_path / "found.json"),
           "labels16": str(tmp_path / "labels.tif"), "labels32": str(tmp_path / "labels32.tif")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    subprocess.run([NODE, str(HARNESS), str(STATIC / "pipeline.js"), str(tmp_path / "job.json")], check=True, timeout=120)
    found = {Path(k).name: v for k, v in json.loads((tmp_path / "found.json").read_text()).items()}
    for name, (data, _) in cases.items():
        last = data[-1] if data.ndim == 3 and data.shape[-1] != 3 else data
        meta = found[name]
        assert meta["pages"] == (len(data) if last is not data else 1), name
        assert (meta["height"], meta["width"]) == last.shape[:2], name
        decoded = np.fromfile(tmp_path / (name + ".bin"), last.dtype).reshape(last.shape)
        assert np.array_equal(decoded, last), name
    assert found["imagej_um.tif"]["um"] == pytest.approx(0.65)
    assert found["centimetre.tif"]["um"] == pytest.approx(0.5)
    assert found["lzw_predictor.tif"]["um"] is None
    assert np.array_equal(tifffile.imread(tmp_path / "labels.tif"), np.array([[0, 1, 2], [3, 4, 65535]], np.uint16))
    assert tifffile.imread(tmp_path / "labels32.tif").dtype == np.uint32
