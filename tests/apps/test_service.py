"""The localhost service: concurrent clients get correct, identical results; bad uploads get 4xx."""

from __future__ import annotations

import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells
from tests.helpers import serving

pytest.importorskip("uvicorn", reason="the service needs the 'gui' extra")


@pytest.fixture(scope="module")
def service(blob_path):
    from samcell_rt import load_model
    from samcell_rt.apps.serve import create_service

    with serving(create_service(load_model(str(blob_path), batch_size=4), max_mb=2)) as url:
        yield url


def tiff(image) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    return buffer.getvalue()


def post(url, data, query="name=a.tif"):
    request = urllib.request.Request(f"{url}/v1/segment?{query}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read(), response.headers  # case-insensitive lookups
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_health_and_model(service):
    with urllib.request.urlopen(f"{service}/health", timeout=10) as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{service}/v1/model", timeout=10) as response:
        assert json.load(response)["name"] == "blob-test"


def test_concurrent_requests_share_batches_and_agree(service, blob_path):
    from samcell_rt import load_model
    from samcell_rt.apps.client import segment_remote

    images = [as_dtype(synthetic_cells((300, 300), count=4 + i % 3, seed=i % 3)[0], "uint16") for i in range(12)]
    expected = [load_model(str(blob_path)).segment(img).labels for img in images[:3]]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda img: segment_remote(service, tiff(img), name="x.tif", timeout=120), images))
    for i, (labels, metrics) in enumerate(replies):
        np.testing.assert_array_equal(labels, expected[i % 3])
        assert metrics[0]["cells"] == 4 + i % 3


def test_json_format_and_stacks(service):
    stack = np.stack([as_dtype(synthetic_cells((260, 260), count=n, seed=n)[0], "uint8") for n in (2, 5)])
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stack, photometric="minisblack")
    status, body, _ = post(service, buffer.getvalue(), "name=s.tif&format=json")
    assert status == 200
    reply = json.loads(body)
    assert [f["cells"] for f in reply["frames"]] == [2, 5] and len(reply["frames"][1]["cells_table"]["id"]) == 5


def test_timeline_format_plots_a_growing_stack(service):
    pytest.importorskip("matplotlib", reason="plots need the 'report' extra")
    stack = np.stack([as_dtype(synthetic_cells((256, 256), count=2 ** f, seed=f)[0], "uint8") for f in range(5)])
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stack, imagej=True, metadata={"axes": "TYX", "finterval": 3600})
    status, body, headers = post(service, buffer.getvalue(), "name=growth.tif&format=timeline")
    assert status == 200 and body[:4] == b"\x89PNG"
    growth = json.loads(headers["X-Samcell-Growth"])
    assert growth["unit"] == "h" and growth["doubling_time"] == pytest.approx(1, rel=0.1)
    assert post(service, tiff(stack[0]), "name=one.tif&format=timeline")[0] == 400


def test_bad_uploads_get_4xx_and_the_server_stays_up(service):
    assert post(service, b"not a tiff")[0] == 422
    assert post(service, b"x", "name=notes.txt")[0] == 415
    assert post(service, b"x", "")[0] == 415
    assert post(service, b"\0" * (3 * 2**20))[0] == 413
    status, body, headers = post(service, tiff(as_dtype(synthetic_cells((256, 256), count=3)[0], "uint8")),
                                 "name=ok.tif&format=tiff")
    assert status == 200 and json.loads(headers["X-Samcell-Metrics"])[0]["cells"] == 3
    assert tifffile.imread(io.BytesIO(body)).shape == (256, 256)


def lying_png() -> bytes:
    import struct
    import zlib

    import cv2

    data = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def chunked_post(url: str, path: str, size: int) -> int:
    """POST `size` bytes with Transfer-Encoding: chunked (no Content-Length); the status code."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    body = (b"\0" * 65536 for _ in range(size // 65536))
    connection.request("POST", path, body=body, encode_chunked=True,
                       headers={"Content-Type": "application/octet-stream"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_hostile_requests_get_clear_4xx(service):
    status, body, _ = post(service, lying_png(), "name=huge.png")
    assert status == 422 and "100000 x 100000" in json.loads(body)["error"]
    status, body, _ = post(service, b"x", "name=a.tif&format=xml")
    assert status == 400 and "json, tiff" in json.loads(body)["error"]
    status, body, _ = post(service, b"x", "name=a.tif&channel=one")
    assert status == 400 and "channel" in json.loads(body)["error"]
    assert chunked_post(service, "/v1/segment?name=a.tif", 3 * 2**20) == 413
    assert post(service, b"not a tiff")[0] == 422  # still serving


def test_channel_query_picks_a_channel(service):
    image = as_dtype(synthetic_cells((256, 256), count=4, seed=3)[0], "uint8")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack([image, np.zeros_like(image)]), metadata={"axes": "CYX"})
    status, body, _ = post(service, buffer.getvalue(), "name=two.tif")
    assert status == 422 and "channel=N" in json.loads(body)["error"]
    status, body, _ = post(service, buffer.getvalue(), "name=two.tif&channel=0")
    assert status == 200 and json.loads(body)["frames"][0]["cells"] == 4
