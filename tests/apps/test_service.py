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
        answer = json.load(response)
    assert answer["name"] == "blob-test"
    assert (answer["engine"], answer["precision"]) == ("cpu", "fp32")  # what the run took, as run.json says


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


def raw_post(url: str, path: str, headers: dict, body: bytes, timeout: float = 10) -> tuple[int, dict]:
    """POST exactly these headers and body bytes (a lying Content-Length included); (status, JSON reply)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    connection.putrequest("POST", path)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    status, reply = response.status, json.loads(response.read() or b"{}")
    connection.close()
    return status, reply


def multipart(*files: tuple[str, bytes], boundary: str = "b0undary") -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: image/tiff\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("content_type, body, reason", [
    ("multipart/form-data", multipart(("a.tif", b"x")), "multipart"),  # no boundary
    ("multipart/form-data; boundary=b0undary", b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nx", "multipart"),
    ("multipart/form-data; boundary=b0undary", multipart(("a.tif", b"x"), ("b.tif", b"y")), "Too many files"),
])
def test_bad_multipart_bodies_are_400(service, content_type, body, reason):
    status, reply = raw_post(service, "/v1/segment", {"Content-Type": content_type,
                                                      "Content-Length": str(len(body))}, body)
    assert status == 400 and reason in reply["error"], reply


def test_a_huge_declared_length_is_413_at_once(service):
    import time

    start = time.perf_counter()
    status, reply = raw_post(service, "/v1/segment?name=a.tif", {"Content-Length": str(100 * 2**30)}, b"tiny")
    assert status == 413 and time.perf_counter() - start < 5


def test_the_image_calibration_reaches_the_answers(service):
    image = as_dtype(synthetic_cells((256, 256), count=4, seed=9)[0], "uint8")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "um"})
    status, body, _ = post(service, buffer.getvalue(), "name=cal.tif")
    frame = json.loads(body)["frames"][0]
    assert status == 200 and frame["pixel_size_um"] == pytest.approx(0.5)
    assert frame["mean_area_um2"] == pytest.approx(frame["mean_area_px"] * 0.25)
    assert np.allclose(frame["cells_table"]["area_um2"], np.array(frame["cells_table"]["area"]) * 0.25)
    status, body, _ = post(service, buffer.getvalue(), "name=cal.tif&format=tiff")
    with tifffile.TiffFile(io.BytesIO(body)) as tif:
        num, den = tif.pages.first.tags["XResolution"].value
        assert den / num == pytest.approx(0.5)
    status, body, _ = post(service, buffer.getvalue(), "name=cal.tif&format=geojson")
    assert "area_um2" in json.loads(body)["features"][0]["properties"]["measurements"]
