"""Outputs for the lab's tools: Fiji ROI zips, QuPath GeoJSON, ImageJ-calibrated label TIFFs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from click.testing import CliRunner

from samcell_rt.cli import main
from samcell_rt.runs.lab_formats import cell_shapes, geojson, rois_zip
from samcell_rt.synthetic import as_dtype, synthetic_cells


def odd_cells() -> np.ndarray:
    """Cells shaped the way watershed labels are: a notch, diagonal-only contacts, holes, border, a dot, a line."""
    labels = np.zeros((60, 70), np.int32)
    labels[5:15, 5:20] = 1  # rectangle with a one-pixel notch
    labels[5, 5] = 0
    labels[20:50, 10:50] = 2  # ring: its hole must stay a hole
    labels[28:42, 18:42] = 0
    labels[27, 17] = 0  # the hole meets the ring's inner corner diagonally: a self-touching trace
    labels[0:3, 60:70] = 3  # on the border
    labels[55, 2] = 4  # one pixel
    labels[55, 6:9] = 5  # a line
    labels[52:54, 52:54] = 6  # two squares touching only at a corner (8-connected, one cell)
    labels[54:56, 54:56] = 6
    labels[5:12, 30:40] = 7  # a staircase edge, as watershed makes them
    for step in range(6):
        labels[5 + step, 30:31 + step] = 0
    return labels


def test_outlines_are_valid_traced_along_pixel_edges_and_keep_holes():
    shapely = pytest.importorskip("shapely")
    labels = odd_cells()
    shapes = cell_shapes(labels)
    assert sorted(shapes) == [1, 2, 3, 4, 5, 6, 7]
    for cell, shape in shapes.items():
        assert shape.is_valid, (cell, shapely.is_valid_reason(shape))
        assert shape.area == (labels == cell).sum()  # pixel edges: the cell's own pixel count, to the pixel
        mask = shapely.contains_xy(shape, *np.meshgrid(np.arange(70) + 0.5, np.arange(60) + 0.5))
        np.testing.assert_array_equal(mask, labels == cell)  # exactly the cell's pixels, no background
    ring = shapes[2]
    # the hole and the pixel meeting it at a corner: two holes touching at one point, as OGC allows
    assert ring.geom_type == "Polygon" and len(ring.interiors) == 2 and ring.area == 40 * 30 - 14 * 24 - 1
    assert shapes[6].geom_type == "MultiPolygon" and len(shapes[6].geoms) == 2
    assert shapes[1].bounds == (5, 5, 20, 15)


def test_rois_and_geojson_hold_the_cells_pixels(tmp_path):
    """GeoJSON: valid geometries with interior rings; ROI zip: traced polygons, composite ROIs for holes
    and pieces, each covering exactly its cell's pixels (checked by ImageJ itself where Java is here)."""
    shapely = pytest.importorskip("shapely")
    from types import SimpleNamespace

    from samcell_rt.runtime.measure import cell_table

    labels = odd_cells()
    result = SimpleNamespace(labels=labels, cells=cell_table(labels, np.zeros(labels.shape, np.uint8)))
    features = geojson([result])["features"]
    for feature in features:
        shape = shapely.geometry.shape(feature["geometry"])
        assert shape.is_valid and shape.area == (labels == feature["properties"]["id"]).sum()
    assert [len(f["geometry"]["coordinates"]) for f in features if f["properties"]["id"] == 2] == [3]  # shell + holes
    archive = tmp_path / "cells_rois.zip"
    archive.write_bytes(rois_zip([result]))
    rois = {int(roi.name): roi for roi in roifile.roiread(archive)}
    assert sorted(rois) == [1, 2, 3, 4, 5, 6, 7]
    assert {cell for cell, roi in rois.items() if roi.composite} == {2, 6}
    assert shapely.Polygon(rois[1].coordinates()).area == (labels == 1).sum()
    tifffile.imwrite(tmp_path / "labels.tif", labels.astype(np.uint16))
    counts = imagej_roi_pixels(tmp_path, archive, tmp_path / "labels.tif")
    for cell in rois:
        assert counts[f"{cell:05d}"] == ((labels == cell).sum(), (labels == cell).sum()), cell


IMAGEJ_JAR = Path("/usr/share/java/ij.jar")  # Debian's `imagej` package


def imagej_roi_pixels(work: Path, archive: Path, labels: Path) -> dict[str, tuple[int, int]]:
    """ROI name -> (pixels ImageJ puts inside the ROI, how many of those carry the ROI's cell id)."""
    if not (IMAGEJ_JAR.exists() and shutil.which("javac") and shutil.which("java")):
        pytest.skip("needs Java and ImageJ (Debian: apt-get install imagej)")
    source = Path(__file__).with_name("RoiPixels.java")
    subprocess.run(["javac", "-cp", str(IMAGEJ_JAR), "-d", str(work), str(source)], check=True, timeout=120)
    run = subprocess.run(["java", "-Djava.awt.headless=true", "-cp", f"{IMAGEJ_JAR}:{work}", "RoiPixels",
                          str(archive), str(labels)], capture_output=True, text=True, timeout=120, check=True)
    return {name: (int(inside), int(match)) for name, inside, match in (line.split() for line in run.stdout.splitlines())}


def test_segment_writes_rois_geojson_and_calibrated_labels(tmp_path, blob_path):
    shapely = pytest.importorskip("shapely")
    image, _ = synthetic_cells((260, 300), count=7, seed=3)
    tifffile.imwrite(tmp_path / "img.tif", as_dtype(image, "uint16"))
    stack = np.stack([as_dtype(synthetic_cells((200, 220), count=3 + f, seed=f)[0], "uint16") for f in range(3)])
    tifffile.imwrite(tmp_path / "st.tif", stack, photometric="minisblack")
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "img.tif"), str(tmp_path / "st.tif"), "--model",
                                       str(blob_path), "--rois", "--geojson", "--pixel-size", "0.5",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o"
    labels = tifffile.imread(out / "img_labels.tif")
    rois = roifile.roiread(out / "img_rois.zip")
    assert len(rois) == labels.max() == 7
    collection = json.loads((out / "img.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 7
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        props = feature["properties"]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) >= 5
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Cell"
        cell = props["id"]
        assert props["measurements"]["area"] == pytest.approx((labels == cell).sum())
        assert props["measurements"]["area_um2"] == pytest.approx((labels == cell).sum() * 0.25)
        assert shapely.Polygon(ring).area == (labels == cell).sum()
    with tifffile.TiffFile(out / "img_labels.tif") as tif:
        assert tif.imagej_metadata["unit"] == "um"
        num, den = tif.pages.first.tags["XResolution"].value
        assert den / num == pytest.approx(0.5)
    with tifffile.TiffFile(out / "st_labels.tif") as tif:
        assert tif.imagej_metadata["frames"] == 3 and tif.series[0].axes == "TYX"
    stack_rois = roifile.roiread(out / "st_rois.zip")
    stack_labels = tifffile.imread(out / "st_labels.tif")
    assert len(stack_rois) == sum(int(frame.max()) for frame in stack_labels)
    assert sorted({roi.t_position for roi in stack_rois}) == [1, 2, 3]
    assert {f["properties"]["frame"] for f in json.loads((out / "st.geojson").read_text())["features"]} == {0, 1, 2}


def test_service_and_gui_offer_rois_and_geojson(blob_path):
    pytest.importorskip("starlette", reason="needs the 'gui' extra")
    pytest.importorskip("httpx", reason="starlette's test client needs httpx")
    import io
    import time
    import zipfile

    from starlette.testclient import TestClient

    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app
    from samcell_rt.apps.serve import create_service

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, as_dtype(synthetic_cells((256, 256), count=4, seed=9)[0], "uint8"))
    data = buffer.getvalue()
    segmenter = load_model(str(blob_path))
    with TestClient(create_service(segmenter)) as service:
        zipped = service.post("/v1/segment?name=a.tif&format=rois", content=data)
        assert zipped.status_code == 200 and len(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()) == 4
        detections = service.post("/v1/segment?name=a.tif&format=geojson", content=data)
        assert detections.headers["content-type"] == "application/geo+json" and len(detections.json()["features"]) == 4
    with TestClient(create_app(segmenter)) as gui:
        job = gui.post("/api/images", files=[("files", ("a.tif", data, "image/tiff"))]).json()["accepted"][0]
        while gui.get(f"/api/images/{job['id']}").json()["status"] not in ("done", "failed"):
            time.sleep(0.05)
        zipped = gui.get(f"/api/images/{job['id']}/download/rois")
        assert len(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()) == 4
        assert 'filename="a.geojson"' in gui.get(f"/api/images/{job['id']}/download/geojson").headers["content-disposition"]
