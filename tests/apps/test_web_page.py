"""The built web page in the system Chromium (headless), driven over the DevTools protocol.

With the blob test model (fast, default suite): the page's labels against the runtime's on a 16-bit
TIFF, its downloads (TIFF read back by tifffile, CSV rows, GeoJSON polygons valid), a queue holding a
bad file and a file that is no image (each says why, the queue goes on), cancelling, an image above
the page's limit, a model that fails to load, the one-thread fallback without cross-origin isolation,
and that no request leaves for another host. On the demo frame with the shipped model (slow): cell
counts within 2 % and SEG >= 0.97 against `samcell-rt segment --diameter off`.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from samcell_rt.apps.web.chromium import find_chromium
from samcell_rt.errors import DownloadError
from samcell_rt.synthetic import as_dtype, synthetic_cells

DEMO = Path(__file__).resolve().parents[2] / "samcell_rt" / "data" / "ecoli-phase-t17.tif"
pytestmark = [pytest.mark.skipif(find_chromium() is None, reason="no system Chromium (the test set-up installs it)")]
SEGMENT = """(async () => {{
  const api = await import('./samcell.js');
  const model = window.__model || (window.__model = await api.loadModel({model!r}));
  const bytes = await (await fetch({url!r})).arrayBuffer();
  const r = await model.segment(bytes);
  const raw = new Uint8Array(Int32Array.from(r.labels).buffer);
  let text = '';
  for (let i = 0; i < raw.length; i += 32768) text += String.fromCharCode(...raw.subarray(i, i + 32768));
  return {{ labels: btoa(text), width: r.width, height: r.height, count: r.count, cells: r.cells.length,
            threads: model.threads, backend: model.backend }};
}})()"""
DOWNLOAD = """(async () => {{
  const blob = await (await fetch(document.getElementById({id!r}).href)).blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 32768) text += String.fromCharCode(...bytes.subarray(i, i + 32768));
  return btoa(text);
}})()"""
QUEUE_DONE = ("[...document.querySelectorAll('#queue li')].length === {n} && [...document.querySelectorAll('#queue li')]"
              ".every(li => ['done', 'error', 'cancelled'].includes(li.dataset.state)) && [...document.querySelectorAll("
              "'#queue li')].map(li => [li.dataset.state, li.querySelector('.status').textContent])")


def serve(folder: Path, isolated: bool = True):
    from samcell_rt.apps.web.server import make_server

    if isolated:
        server = make_server(folder, port=0)
    else:  # a plain static server: no COOP/COEP, so no SharedArrayBuffer and no wasm threads
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def build(folder: Path, model) -> dict:
    from samcell_rt.apps.web import build_site

    try:
        return build_site(folder, model)
    except DownloadError as exc:
        pytest.skip(f"onnxruntime-web is not in the user cache and cannot be fetched from the npm registry ({exc})")


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives Chromium")
    from samcell_rt.apps.web.chromium import Chromium

    with Chromium(find_chromium()) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def blob_site(tmp_path_factory, blob_path):
    folder = tmp_path_factory.mktemp("web") / "site"
    build(folder, blob_path)
    image = as_dtype(synthetic_cells((300, 457), count=18, radius=13, seed=11)[0], "uint16")
    import tifffile

    tifffile.imwrite(folder / "cells16.tif", image, compression="zlib", predictor=True)
    (folder / "notes.txt").write_text("this is not an image\n")
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 40)
    server, url = serve(folder)
    yield folder, url, image
    server.shutdown()


def decode_labels(found: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(found["labels"]), np.int32).reshape(found["height"], found["width"])


def only_local(requests: list[str], url: str) -> list[str]:
    """The requests that went anywhere but the page's own server (blob: and data: URLs stay in the page)."""
    own = urlsplit(url).netloc
    return [r for r in requests if urlsplit(r).scheme not in ("blob", "data") and urlsplit(r).netloc != own]


def test_page_segments_like_the_runtime(browser, blob_site, blob_path):
    from samcell_rt import load_model

    folder, url, image = blob_site
    browser.requests.clear()
    browser.goto(url)
    status = browser.wait_for("(s => s.dataset.state !== 'loading' && [s.dataset.state, s.textContent])"
                              "(document.getElementById('model-status'))")
    assert status[0] == "ready", status
    assert browser.evaluate("crossOriginIsolated") is True
    found = browser.evaluate(SEGMENT.format(model="model.onnx", url="cells16.tif"))
    expected = load_model(str(blob_path), "cpu", diameter="off").segment(image).labels
    labels = decode_labels(found)
    assert found["count"] == expected.max() >= 15
    assert np.array_equal(labels, expected)  # same ids too: markers are numbered in OpenCV's contour order
    assert found["threads"] == min(browser.evaluate("navigator.hardwareConcurrency"), 8) and found["backend"] == "wasm"
    assert not only_local(browser.requests, url)


def test_queue_downloads_and_errors(browser, blob_site, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    shapely = pytest.importorskip("shapely.geometry")
    folder, url, _ = blob_site
    browser.requests.clear()
    browser.goto(url)
    browser.wait_for("document.getElementById('model-status').dataset.state === 'ready'")
    png = tmp_path / "cells8.png"
    import cv2

    cv2.imwrite(str(png), as_dtype(synthetic_cells((200, 240), count=6, radius=12, seed=2)[0], "uint8"))
    browser.set_files("#files", [folder / "cells16.tif", folder / "notes.txt", folder / "broken.tif", png])
    states = browser.wait_for(QUEUE_DONE.format(n=4), timeout=300)
    assert [s for s, _ in states] == ["done", "error", "error", "done"], states
    assert "not a readable image" in states[1][1] and "not a readable TIFF" in states[2][1]
    browser.evaluate("document.querySelector('#queue li').click()")  # show the 16-bit image's result
    count = int(states[0][1].split()[0])
    labels = tifffile.imread(_download(browser, "dl-tiff", tmp_path / "labels.tif"))
    assert labels.dtype == np.uint16 and labels.max() == count
    reference = decode_labels(browser.evaluate(SEGMENT.format(model="model.onnx", url="cells16.tif")))
    assert np.array_equal(labels, reference)
    rows = _download(browser, "dl-csv", tmp_path / "cells.csv").read_text().strip().splitlines()
    assert rows[0].startswith("id,centroid_y,centroid_x,area,perimeter,circularity") and len(rows) == count + 1
    outlines = json.loads(_download(browser, "dl-geojson", tmp_path / "cells.geojson").read_text())
    assert len(outlines["features"]) == count
    for feature in outlines["features"]:
        polygon = shapely.shape(feature["geometry"])
        assert polygon.is_valid and polygon.area > 0
        assert polygon.representative_point().within(polygon)
        x, y = polygon.representative_point().coords[0]
        assert labels[int(y), int(x)] == feature["properties"]["id"]
    assert not only_local(browser.requests, url)


def _download(browser, anchor: str, path: Path) -> Path:
    path.write_bytes(base64.b64decode(browser.evaluate(DOWNLOAD.format(id=anchor))))
    return path


def test_cancel_too_large_and_bad_model(browser, blob_site):
    folder, url, _ = blob_site
    browser.goto(url)
    browser.wait_for("document.getElementById('model-status').dataset.state === 'ready'")
    outcome = browser.evaluate("""(async () => {
      const api = await import('./samcell.js');
      const model = await api.loadModel('model.onnx');
      const bytes = await (await fetch('cells16.tif')).arrayBuffer();
      const controller = new AbortController();
      const blank = { pixels: new Uint8Array(1500 * 1500), width: 1500, height: 1500, bitDepth: 8 };  // 64 tiles
      const cancelled = await model.segment(blank, { signal: controller.signal, onProgress: () => controller.abort() })
        .then(() => 'finished', (e) => e.name + ' ' + e.kind);
      const after = await model.segment(bytes.slice(0)).then((r) => r.count);
      const large = await model.segment(bytes.slice(0), { maxPixels: 1000 })
        .then(() => 'finished', (e) => e.kind + ': ' + e.message);
      const flat = { pixels: new Uint16Array(300 * 457), width: 300, height: 457, bitDepth: 16 };
      const raw = await model.segment(flat).then((r) => r.count);
      const missing = await api.loadModel('missing.onnx').then(() => 'loaded', (e) => e.kind + ': ' + e.message);
      const notOnnx = await api.loadModel('index.html').then(() => 'loaded', (e) => e.kind + ': ' + e.message);
      return { cancelled, after, large, raw, missing, notOnnx };
    })()""")
    assert outcome["cancelled"] == "AbortError cancelled"
    assert outcome["after"] > 0 and outcome["raw"] == 0
    assert outcome["large"].startswith("too-large: image is 457 x 300 = 137,100 pixels")
    assert outcome["missing"].startswith("model: ") and "HTTP 404" in outcome["missing"]
    assert outcome["notOnnx"].startswith("model: ")


def test_model_failure_shown_and_one_thread_without_isolation(browser, blob_site, tmp_path):
    folder, _, _ = blob_site
    broken = tmp_path / "broken-site"
    shutil.copytree(folder, broken, ignore=shutil.ignore_patterns("model.onnx", "ort"))
    (broken / "ort").symlink_to(folder / "ort")
    (broken / "model.onnx").write_bytes(b"\x08\x07" + b"not a model" * 10)
    server, url = serve(broken)
    try:
        browser.goto(url)
        status = browser.wait_for("document.getElementById('model-status').dataset.state === 'error' && "
                                  "document.getElementById('model-status').textContent")
        assert status.startswith("The model failed to load:")
        browser.set_files("#files", [folder / "cells16.tif"])
        states = browser.wait_for(QUEUE_DONE.format(n=1))
        assert states[0][0] == "error" and "the model failed to load" in states[0][1]
    finally:
        server.shutdown()
    server, url = serve(folder, isolated=False)
    try:
        browser.goto(url)
        browser.wait_for("document.getElementById('model-status').dataset.state === 'ready'")
        assert browser.evaluate("crossOriginIsolated") is False
        assert "running on one thread" in browser.evaluate("document.getElementById('notes').textContent")
        assert ", 1 thread." in browser.evaluate("document.getElementById('model-status').textContent")
        assert decode_labels(browser.evaluate(SEGMENT.format(model="model.onnx", url="cells16.tif"))).max() > 0
    finally:
        server.shutdown()


@pytest.mark.slow
def test_demo_frame_matches_the_command_line(browser, tmp_path):
    """The acceptance check: the shipped model on the demo frame, page against `samcell-rt segment
    --diameter off` (the page never rescales): counts within 2 %, SEG >= 0.97."""
    tifffile = pytest.importorskip("tifffile")
    from samcell_rt.evaluate import pooled, score_pair

    folder = tmp_path / "site"
    build(folder, None)
    shutil.copyfile(DEMO, folder / DEMO.name)
    server, url = serve(folder)
    try:
        browser.requests.clear()
        browser.goto(url)
        browser.wait_for("document.getElementById('model-status').dataset.state === 'ready'", timeout=300)
        page = decode_labels(browser.evaluate(SEGMENT.format(model="model.onnx", url=DEMO.name), timeout=1800))
        assert not only_local(browser.requests, url)
    finally:
        server.shutdown()
    subprocess.run([sys.executable, "-m", "samcell_rt.cli", "segment", str(DEMO), "--out", str(tmp_path / "cli"),
                    "--engine", "cpu", "--diameter", "off"], check=True, timeout=1800)
    cli = tifffile.imread(next((tmp_path / "cli").rglob("*labels*.tif")))
    scores = pooled([score_pair(cli, page)])
    assert abs(int(page.max()) - int(cli.max())) <= 0.02 * cli.max()
    assert scores["SEG"] >= 0.97, scores
