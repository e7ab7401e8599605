"""The GUI's HTTP API without a browser: safety limits and error codes."""

from __future__ import annotations

import io
import time

import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells

pytest.importorskip("starlette", reason="GUI tests need the 'gui' extra")
pytest.importorskip("httpx", reason="starlette's test client needs httpx")


@pytest.fixture()
def client(blob_path):
    from starlette.testclient import TestClient

    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app

    with TestClient(create_app(load_model(str(blob_path)), max_upload_mb=1)) as test_client:
        yield test_client


def wait_done(client, job_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"/api/images/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def tiff_bytes(image):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    return buffer.getvalue()


def test_upload_process_rethreshold_and_download(client):
    image = as_dtype(synthetic_cells((300, 320), count=8, seed=2)[0], "uint16")
    reply = client.post("/api/images", files=[("files", ("../../etc/evil name.tif", tiff_bytes(image), "image/tiff"))])
    assert reply.status_code == 200
    job = reply.json()["accepted"][0]
    assert job["name"] == "evil name.tif"  # only the base name is kept, and never used as a path
    body = wait_done(client, job["id"])
    assert body["metrics"]["cells"] == 8 and len(body["cells"]["id"]) == 8
    assert client.post(f"/api/images/{job['id']}/thresholds", json={"peak": 0.99, "fill": 0.09}).json()["metrics"]["cells"] == 0
    tif = client.get(f"/api/images/{job['id']}/labels.tif")
    assert tif.status_code == 200 and tifffile.imread(io.BytesIO(tif.content)).shape == (300, 320)
    assert client.get(f"/api/images/{job['id']}/cells.csv").text.startswith("frame,id,")
    assert client.get(f"/api/images/{job['id']}/overlay.png?mode=fill").headers["content-type"] == "image/png"


def test_rejections(client):
    assert client.post("/api/images", files=[("files", ("notes.txt", b"hi", "text/plain"))]).status_code == 415
    big = b"\0" * (2 * 1024 * 1024)
    assert client.post("/api/images", files=[("files", ("big.tif", big, "image/tiff"))]).status_code == 413
    broken = client.post("/api/images", files=[("files", ("broken.tif", b"not a tiff", "image/tiff"))]).json()
    body = wait_done(client, broken["accepted"][0]["id"])
    assert body["status"] == "failed" and "broken.tif" in body["error"] and "/tmp" not in body["error"]
    assert client.get("/api/images/999").status_code == 404
    assert client.get(f"/api/images/{broken['accepted'][0]['id']}/image.png").status_code == 409
