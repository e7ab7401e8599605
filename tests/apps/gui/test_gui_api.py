"""The GUI's HTTP API without a browser: safety limits and error codes."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
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
    tif = client.get(f"/api/images/{job['id']}/download/labels")
    assert tif.status_code == 200 and tifffile.imread(io.BytesIO(tif.content)).shape == (300, 320)
    assert client.get(f"/api/images/{job['id']}/download/cells").text.startswith("frame,id,")
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


def test_thresholds_without_fill_and_bad_json_are_400(client):
    image = as_dtype(synthetic_cells((260, 260), count=3, seed=5)[0], "uint8")
    job = client.post("/api/images", files=[("files", ("t.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
    wait_done(client, job["id"])
    reply = client.post(f"/api/images/{job['id']}/thresholds", json={"peak": 0.5})
    assert reply.status_code == 400 and "missing fill" in reply.json()["error"]
    assert client.post(f"/api/images/{job['id']}/thresholds", content=b"{").status_code == 400
    assert client.get(f"/api/images/{job['id']}?frame=x").status_code == 400
    assert client.get(f"/api/images/{job['id']}/overlay.png?mode=zebra").status_code == 400


def test_chunked_upload_over_the_limit_is_413(client):
    def chunks():
        for _ in range(32):
            yield b"\0" * 65536  # 2 MB in total, no Content-Length

    reply = client.post("/api/images", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert reply.status_code == 413


def test_worker_survives_a_lying_header_and_any_exception(client, monkeypatch):
    import struct
    import zlib

    import cv2

    data = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    huge = client.post("/api/images", files=[("files", ("huge.png", bytes(data), "image/png"))]).json()["accepted"][0]
    assert "100000 x 100000" in wait_done(client, huge["id"])["error"]
    jobs = client.app.state.jobs
    monkeypatch.setattr(jobs.segmenter, "segment_many", lambda frames: (_ for _ in ()).throw(RuntimeError("boom")))
    image = as_dtype(synthetic_cells((260, 260), count=3, seed=6)[0], "uint8")
    boom = client.post("/api/images", files=[("files", ("b.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
    assert wait_done(client, boom["id"])["error"] == "boom"
    monkeypatch.undo()
    ok = client.post("/api/images", files=[("files", ("c.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
    assert wait_done(client, ok["id"])["status"] == "done"


def test_results_live_on_disk_memory_stays_bounded_and_jobs_can_be_removed(client):
    jobs = client.app.state.jobs
    image = as_dtype(synthetic_cells((300, 320), count=4, seed=7)[0], "uint16")
    ids = [client.post("/api/images", files=[("files", (f"m{i}.tif", tiff_bytes(image), "image/tiff"))]).json()
           ["accepted"][0]["id"] for i in range(jobs.in_memory + 3)]
    for job_id in ids:
        assert wait_done(client, job_id)["status"] == "done"
    assert len(jobs._loaded) <= jobs.in_memory
    folder = Path(jobs._folder.name)
    assert not list(folder.glob("*.tif"))  # uploads deleted once read
    assert client.get(f"/api/images/{ids[0]}").json()["metrics"]["cells"] == 4  # reloaded from disk
    assert client.delete(f"/api/images/{ids[0]}").status_code == 200
    assert client.get(f"/api/images/{ids[0]}").status_code == 404
    assert not (folder / f"{ids[0]}.results").exists()
    client.app.state.jobs.close()
    assert not folder.exists()


def test_timeline_of_a_stack_and_summary_plot_across_images(client):
    pytest.importorskip("matplotlib", reason="plots need the 'report' extra")
    assert client.get("/api/summary.png").status_code == 409
    frames = np.stack([as_dtype(synthetic_cells((256, 256), count=2 ** f, seed=f)[0], "uint8") for f in range(5)])
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frames, imagej=True, metadata={"axes": "TYX", "finterval": 1800})
    stack = client.post("/api/images", files={"files": ("growth.tif", buffer.getvalue(), "image/tiff")}).json()
    single = client.post("/api/images", files={"files": ("one.tif", tiff_bytes(frames[2]), "image/tiff")}).json()
    stack_id, single_id = stack["accepted"][0]["id"], single["accepted"][0]["id"]
    assert wait_done(client, stack_id)["frames"] == 5 and wait_done(client, single_id)["status"] == "done"
    timeline = client.get(f"/api/images/{stack_id}/timeline.png")
    assert timeline.status_code == 200 and timeline.content[:4] == b"\x89PNG"
    assert client.get(f"/api/images/{single_id}/timeline.png").status_code == 400
    summary = client.get("/api/summary.png")
    assert summary.status_code == 200 and summary.content[:4] == b"\x89PNG"


def test_quality_warnings_reach_the_job_list(tmp_path):
    from starlette.testclient import TestClient

    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app
    from samcell_rt.synthetic import broken_model

    app = create_app(load_model(str(broken_model(tmp_path / "dim.onnx", 0.3))))
    image = as_dtype(synthetic_cells((260, 260), count=3, seed=8)[0], "uint8")
    with TestClient(app) as dim:
        job = dim.post("/api/images", files=[("files", ("d.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
        body = wait_done(dim, job["id"])
        assert body["status"] == "done" and body["metrics"]["cells"] == 0
        assert "no cell centre reaches the peak threshold" in body["warnings"][0]
        assert dim.get("/api/images").json()[0]["warnings"] == body["warnings"]


def test_downloads_follow_the_output_table_and_check_the_frame(client):
    """Each kind the folder writer renders is a download with its media type and file name; a frame is checked."""
    import json
    import zipfile

    from samcell_rt.runs.outputs import OUTPUTS

    image, _ = synthetic_cells((256, 256), count=4, seed=3)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack([image, image]))
    job = client.post("/api/images", files=[("files", ("two.tif", buffer.getvalue(), "image/tiff"))]).json()["accepted"][0]
    wait_done(client, job["id"])
    kinds = {kind.name: kind for kind in OUTPUTS if kind.render}
    assert set(kinds) == {"labels", "cells", "distance", "rois", "geojson"}
    for name, kind in kinds.items():
        reply = client.get(f"/api/images/{job['id']}/download/{name}")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(kind.media_type), name
        assert f'filename="two{kind.suffix}"' in reply.headers["content-disposition"]
    assert tifffile.imread(io.BytesIO(client.get(f"/api/images/{job['id']}/download/labels").content)).shape == (2, 256, 256)
    one = client.get(f"/api/images/{job['id']}/download/labels?frame=1").content
    assert tifffile.imread(io.BytesIO(one)).shape == (256, 256)
    features = json.loads(client.get(f"/api/images/{job['id']}/download/geojson?frame=0").content)["features"]
    assert 0 < len(features) < len(json.loads(client.get(f"/api/images/{job['id']}/download/geojson").content)["features"])
    assert len(zipfile.ZipFile(io.BytesIO(client.get(f"/api/images/{job['id']}/download/rois").content)).namelist()) > 0
    assert client.get(f"/api/images/{job['id']}/download/geojson?frame=99").status_code == 400
    assert client.get(f"/api/images/{job['id']}/download/overlay").status_code == 404
    assert client.get(f"/api/images/{job['id']}/download/xml").status_code == 404
def test_a_frame_that_does_not_exist_is_400_on_every_download(client):
    """cells.geojson?frame=99 used to answer 200 and ignore frame."""
    image = as_dtype(synthetic_cells((128, 128), count=3, seed=4)[0], "uint8")
    job = client.post("/api/images", files=[("files", ("a.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
    wait_done(client, job["id"])
    for download in ("download/geojson", "download/rois", "download/labels", "download/cells", "overlay.png"):
        reply = client.get(f"/api/images/{job['id']}/{download}?frame=99")
        assert reply.status_code == 400 and "frame 99 does not exist" in reply.json()["error"], download
        assert client.get(f"/api/images/{job['id']}/{download}?frame=0").status_code == 200


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.tif\"\r\n\r\nx\r\n--x--\r\n"),
    ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nunterminated"),
])
def test_bad_multipart_uploads_are_400(client, content_type, body):
    reply = client.post("/api/images", content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 400 and "multipart" in reply.json()["error"]


def test_test_artifacts_go_where_git_ignores_them():
    """The browser test's screenshots once overwrote tracked files (tests/test-artifacts/gui.png)."""
    import shutil
    import subprocess

    from tests.helpers import ARTIFACTS

    root = Path(__file__).resolve().parents[3]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    probe = ARTIFACTS / "gui.png"
    ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(probe)], timeout=30)
    assert ignored.returncode == 0, f"{probe} is not ignored by git"
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", str(ARTIFACTS)], capture_output=True, text=True,
                             timeout=30)
    assert tracked.stdout == ""


def test_info_says_which_engine_and_precision_the_model_runs_on(client):
    info = client.get("/api/info").json()
    assert (info["model"], info["engine"], info["precision"]) == ("blob-test", "cpu", "fp32")


def test_a_small_upload_that_would_inflate_past_the_limit_fails_alone(client, tmp_path):
    """A zipped OME-Zarr of a few KB that decodes to 16 MB (the 1 MB limit counts decoded bytes, as the
    service does): that job fails naming the file, and the queue goes on."""
    from tests.apps.test_service_hostile import bomb

    data = bomb(tmp_path)
    assert len(data) < 1 << 20
    job = client.post("/api/images", files=[("files", ("b.ome.zarr.zip", data, "application/zip"))]).json()["accepted"][0]
    body = wait_done(client, job["id"])
    assert body["status"] == "failed" and "b.ome.zarr.zip" in body["error"] and "decoded data" in body["error"], body
    image = as_dtype(synthetic_cells((260, 260), count=3, seed=6)[0], "uint8")
    ok = client.post("/api/images", files=[("files", ("c.tif", tiff_bytes(image), "image/tiff"))]).json()["accepted"][0]
    assert wait_done(client, ok["id"])["status"] == "done"
