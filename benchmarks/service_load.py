"""Throughput of `samcell-rt serve` under concurrent load, against one client at a time (same run).

Starts the service on 127.0.0.1 in this process with the blob test model, then sends a bounded
number of requests: first from one client, then from N concurrent clients.

    python benchmarks/service_load.py --requests 48 --clients 8 --out benchmarks/results/service_load_cpu.json
"""

from __future__ import annotations

import io
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from samcell_rt.machine import emit_report, machine_info


def _serve(app) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


@click.command()
@click.option("--requests", "count", default=48, show_default=True)
@click.option("--clients", default=8, show_default=True)
@click.option("--size", default=512, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(count: int, clients: int, size: int, out: Path | None) -> None:
    import tifffile

    from samcell_rt import load_model
    from samcell_rt.apps.client import segment_remote
    from samcell_rt.apps.serve import create_service
    from samcell_rt.synthetic import as_dtype, blob_model, synthetic_cells

    with tempfile.TemporaryDirectory() as tmp:
        segmenter = load_model(str(blob_model(Path(tmp) / "blob.onnx")), batch_size=8)
    url, server = _serve(create_service(segmenter))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, as_dtype(synthetic_cells((size, size), count=40, seed=0)[0], "uint16"))
    payload = buffer.getvalue()

    def one(_: int) -> int:
        return int(segment_remote(url, payload, name="w.tif", timeout=300)[1][0]["cells"])

    one(0)  # warm-up
    rates = {}
    for workers in (1, clients):
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            cells = set(pool.map(one, range(count)))
        seconds = time.perf_counter() - start
        assert len(cells) == 1, "every request must get the same answer"
        rates[workers] = count / seconds
    server.should_exit = True
    report = {"benchmark": "service_load", "image": f"{size}x{size} uint16", "model": "blob test model",
              "requests": count, "requests_per_second_1_client": rates[1],
              f"requests_per_second_{clients}_clients": rates[clients], "concurrency_gain": rates[clients] / rates[1],
              "machine": machine_info()}
    emit_report(report, out)


if __name__ == "__main__":
    main()
