"""Outputs for the lab's tools: Fiji ROI zips, QuPath GeoJSON, ImageJ-calibrated label TIFFs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import roifile
import tifffile
from click.testing import CliRunner

from samcell_rt.cli import main
from samcell_rt.runs.writers import cell_outlines
from samcell_rt.synthetic import as_dtype, synthetic_cells


def inside(labels: np.ndarray, cell: int, points: np.ndarray) -> bool:
    """Every vertex (pixel-centre coordinates) lies on a pixel of `cell`."""
    xs, ys = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
    return bool((labels[ys, xs] == cell).all())


def test_outlines_follow_each_cell_including_odd_shapes():
    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:20] = 1  # rectangle
    labels[20:35, 10:30] = 2
    labels[25:30, 15:25] = 0  # ring: its outer outline only
    labels[0:3, 45:50] = 3  # on the border
    labels[38, 2] = 4  # one pixel
    labels[38, 6:9] = 5  # a line
    outlines = cell_outlines(labels)
    assert sorted(outlines) == [1, 2, 3, 4, 5]
    assert all(len(points) >= 3 for points in outlines.values())  # real polygons, never a dot or a line
    for cell, points in outlines.items():
        assert inside(labels, cell, points)
    np.testing.assert_array_equal(np.sort(np.unique(outlines[1], axis=0)[:, 0])[[0, -1]], [5.5, 19.5])


def test_segment_writes_rois_geojson_and_calibrated_labels(tmp_path, blob_path):
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
    for roi in rois:
        assert inside(labels, int(roi.name), roi.coordinates())
    collection = json.loads((out / "img.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 7
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        props = feature["properties"]
        assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) >= 4
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Cell"
        cell = props["id"]
        assert props["measurements"]["area"] == pytest.approx((labels == cell).sum())
        assert props["measurements"]["area_um2"] == pytest.approx((labels == cell).sum() * 0.25)
        assert inside(labels, cell, np.array(ring[:-1]))
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
