"""The web page's speed against the native cpu engine, same machine, same run, on the demo frame.

Builds the site for the model, serves it cross-origin isolated, opens it in the system Chromium
(headless), segments the image there through the page's own module (samcell.js) and natively with
the cpu engine (`--diameter off`, what the page does), both after a one-tile warm-up, native before and after the page
(their mean is the peer: on a shared machine the load drifts during the run). Reports
seconds per tile (the model's share) and per image, the threads the page got, the load average,
and how closely the page's labels agree with the native ones (cell counts, CTC SEG).

    nice -n 10 python benchmarks/web_page.py --out benchmarks/results/web_page_cpu.json
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info

DEMO = Path(__file__).resolve().parents[1] / "samcell_rt" / "data" / "ecoli-phase-t17.tif"
SEGMENT_JS = """(async () => {{
  const api = await import('./samcell.js');
  const model = window.__model || (window.__model = await api.loadModel({model_url!r}, {{ threads: {threads} }}));
  const bytes = await (await fetch({image_url!r})).arrayBuffer();
  const started = performance.now();
  const r = await model.segment(bytes, {{ batchSize: {batch} }});
  const wall = (performance.now() - started) / 1000;
  const raw = new Uint8Array(Int32Array.from(r.labels).buffer);
  let text = '';
  for (let i = 0; i < raw.length; i += 32768) text += String.fromCharCode(...raw.subarray(i, i + 32768));
  return {{ labels: btoa(text), width: r.width, height: r.height, count: r.count, tiles: r.tiles, wall,
            timings: r.timings, threads: model.threads, backend: model.backend }};
}})()"""


def page_segment(browser, image_url: str, model_url: str, threads: int, batch: int) -> dict:
    """Segment one served image in the page; labels come back as an int32 array."""
    out = browser.evaluate(SEGMENT_JS.format(model_url=model_url, image_url=image_url, threads=threads, batch=batch),
                           timeout=1800)
    out["labels"] = np.frombuffer(base64.b64decode(out["labels"]), np.int32).reshape(out["height"], out["width"])
    return out


@click.command()
@click.option("--model", default=None, help="Model name or file [default: the shipped samcell-lite].")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEMO, show_default=True)
@click.option("--threads", default=0, help="Page wasm threads (0: the browser's cores, up to 8).")
@click.option("--batch", default=1, show_default=True, help="Tiles per onnxruntime-web call.")
@click.option("--note", default="", help="What the JSON should say about the machine and its load.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(model: str | None, image: Path, threads: int, batch: int, note: str, out: Path | None) -> None:
    from samcell_rt import load_model
    from samcell_rt.apps.web import build_site
    from samcell_rt.apps.web.chromium import Chromium, find_chromium
    from samcell_rt.apps.web.server import make_server
    from samcell_rt.evaluate import pooled, score_pair
    from samcell_rt.runtime.io import read_image

    pixels = read_image(image).frames[0]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        record = build_site(site, model)
        segmenter = load_model(record["model_path"], "cpu", diameter="off")
        segmenter.segment(pixels[:256, :256])
        load_before = os.getloadavg()
        native_runs = [_native(segmenter, pixels)]
        (site / image.name).write_bytes(image.read_bytes())
        (site / "warmup.tif").write_bytes(_crop_tiff(pixels))
        server = make_server(site, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with Chromium(find_chromium()) as browser:
            browser.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            start = time.perf_counter()
            page_segment(browser, "warmup.tif", record["model"], threads, batch)
            page_first = time.perf_counter() - start  # model download, session creation, one tile
            page = page_segment(browser, image.name, record["model"], threads, batch)
        server.shutdown()
        native_runs.append(_native(segmenter, pixels))
    native, _ = native_runs[-1]
    native_wall = float(np.mean([wall for _, wall in native_runs]))
    native_engine = float(np.mean([result.timings["engine"] for result, _ in native_runs]))
    scores = pooled([score_pair(native.labels, page["labels"])])
    tiles = page["tiles"]
    report = {
        "benchmark": "web_page", "image": f"{image.name} {pixels.shape[1]}x{pixels.shape[0]} {pixels.dtype}",
        "tiles": tiles, "model": f"{record['model_name']} v{record['model_version']}", "runtime": record["runtime"],
        "browser": "system Chromium, headless", "page_backend": page["backend"], "page_threads": page["threads"],
        "page_batch": batch, "native_engine": f"{segmenter.engine_name} (onnxruntime, {segmenter.engine_precision})",
        "seconds": {
            "page_image": round(page["wall"], 3), "native_image": round(native_wall, 3),
            "native_image_before_and_after": [round(wall, 3) for _, wall in native_runs],
            "page_per_tile_model": round(page["timings"]["engine"] / tiles, 3),
            "native_per_tile_model": round(native_engine / tiles, 3),
            "page_first_call_incl_model_load": round(page_first, 3),
            "page_stages": {k: round(v, 3) for k, v in page["timings"].items()},
            "native_stages": {k: round(v, 3) for k, v in native.timings.items()},
        },
        "page_over_native_image": round(page["wall"] / native_wall, 3),
        "labels": {"page_cells": page["count"], "native_cells": int(native.labels.max()),
                   "SEG_page_vs_native": round(scores["SEG"], 4),
                   "pixels_labelled_alike": float(np.mean((page["labels"] > 0) == (native.labels > 0)))},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": machine_info(),
        "note": note,
    }
    emit_report(report, out)


def _native(segmenter, pixels: np.ndarray):
    """One native segmentation of the image and its wall time."""
    start = time.perf_counter()
    result = segmenter.segment(pixels)
    return result, time.perf_counter() - start


def _crop_tiff(pixels: np.ndarray) -> bytes:
    """A one-tile crop of the image as TIFF bytes (the warm-up)."""
    import io

    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(pixels[:256, :256]))
    return buffer.getvalue()


if __name__ == "__main__":
    main()
