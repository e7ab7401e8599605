"""The service takes microscope containers: a CZI upload and a zipped OME-Zarr store give the labels a TIFF does."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.apps.test_service import post
from tests.formats_files import PIXEL_UM, write_czi, write_ome_zarr
from tests.helpers import serving


@pytest.fixture(scope="module")
def service(blob_path):
    from samcell_rt import load_model
    from samcell_rt.apps.serve import create_service

    with serving(create_service(load_model(str(blob_path), batch_size=4), max_mb=2)) as url:
        yield url


def cells_of(service, data: bytes, name: str) -> list[int]:
    status, body, _ = post(service, data, f"name={name}&format=json")
    assert status == 200, body
    return [frame["cells"] for frame in json.loads(body)["frames"]]


def test_czi_and_zipped_ome_zarr_uploads(service, tmp_path):
    pytest.importorskip("pylibCZIrw", reason="CZI needs the 'formats' extra")
    image = as_dtype(synthetic_cells((96, 128), count=5, radius=9, seed=3)[0], "uint16")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    expected = cells_of(service, buffer.getvalue(), "a.tif")
    assert expected == [5]
    assert cells_of(service, write_czi(tmp_path / "a.czi", image[None, None, None]).read_bytes(), "a.czi") == expected
    write_ome_zarr(tmp_path / "a.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    archive = shutil.make_archive(str(tmp_path / "a.ome.zarr"), "zip", tmp_path, "a.ome.zarr")
    assert cells_of(service, open(archive, "rb").read(), "a.ome.zarr.zip") == expected
    status, body, _ = post(service, b"PK\x03\x04 not a zip", "name=b.zip")
    assert status == 422 and b"b.zip" in body


def test_gui_takes_a_lif_and_a_zipped_ome_zarr(tmp_path, blob_path):
    pytest.importorskip("starlette", reason="GUI tests need the 'gui' extra")
    pytest.importorskip("httpx", reason="starlette's test client needs httpx")
    pytest.importorskip("liffile", reason="LIF needs the 'formats' extra")
    from starlette.testclient import TestClient

    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app
    from tests.apps.gui.test_gui_api import wait_done
    from tests.formats_files import write_lif

    image = as_dtype(synthetic_cells((96, 128), count=4, radius=9, seed=6)[0], "uint16")
    write_ome_zarr(tmp_path / "g.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    archive = shutil.make_archive(str(tmp_path / "g.ome.zarr"), "zip", tmp_path, "g.ome.zarr")
    uploads = [("files", ("g.lif", write_lif(tmp_path / "g.lif", [image[None]]).read_bytes(), "application/octet-stream")),
               ("files", ("g.ome.zarr.zip", open(archive, "rb").read(), "application/zip"))]
    with TestClient(create_app(load_model(str(blob_path)), max_upload_mb=1)) as client:
        accepted = client.post("/api/images", files=uploads).json()["accepted"]
        assert [wait_done(client, job["id"])["metrics"]["cells"] for job in accepted] == [4, 4]


def test_path_requests_read_stores_under_the_data_root_only(tmp_path, blob_path):
    from samcell_rt import load_model
    from samcell_rt.apps.serve import create_service

    root = tmp_path / "storage"
    root.mkdir()
    image = as_dtype(synthetic_cells((96, 128), count=3, radius=9, seed=8)[0], "uint16")
    write_ome_zarr(root / "big.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    write_ome_zarr(tmp_path / "secret.ome.zarr", image, "yx", [PIXEL_UM, PIXEL_UM])
    (root / "link.ome.zarr").symlink_to(tmp_path / "secret.ome.zarr")
    segmenter = load_model(str(blob_path), batch_size=4)
    with serving(create_service(segmenter, max_mb=2, data_root=root)) as url:
        assert cells_of(url, b"", "x&path=big.ome.zarr") == [3]
        for outside in ("../secret.ome.zarr", "link.ome.zarr", str(tmp_path / "secret.ome.zarr")):
            status, body, _ = post(url, b"", f"path={outside}")
            assert status == 403 and b"outside the service's data root" in body, outside
        status, body, _ = post(url, b"", "path=missing.ome.zarr")
        assert status == 422 and b"missing.ome.zarr: file does not exist" in body
    with serving(create_service(segmenter, max_mb=2)) as url:
        status, body, _ = post(url, b"", "path=big.ome.zarr")
        assert status == 400 and b"--data-root" in body
