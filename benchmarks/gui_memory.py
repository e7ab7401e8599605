"""GUI process memory over many uploads: resident set size after each batch of finished jobs.

Uploads N 16-bit 727x1026 images (the size the issue reported 8 MB per upload for) to the GUI app
in this process with the blob test model, waits for each to finish and records RSS. With results
kept on disk and only the most recent few in memory, RSS should level off instead of growing by
the size of every result.

    python benchmarks/gui_memory.py --uploads 40 --out benchmarks/results/gui_memory_cpu.json
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import click

from samcell_rt.machine import emit_report, machine_info


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


@click.command()
@click.option("--uploads", default=40, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(uploads: int, out: Path | None) -> None:
    import tifffile
    from starlette.testclient import TestClient

    from samcell_rt import load_model
    from samcell_rt.apps.gui.app import create_app
    from samcell_rt.synthetic import as_dtype, blob_model, synthetic_cells

    image = as_dtype(synthetic_cells((727, 1026), count=60, seed=0)[0], "uint16")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image)
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(load_model(str(blob_model(Path(tmp) / "blob.onnx"))))
        rss = []
        with TestClient(app) as client:
            for i in range(uploads):
                job = client.post("/api/images", files=[("files", (f"u{i}.tif", data, "image/tiff"))]).json()
                job_id = job["accepted"][0]["id"]
                while client.get(f"/api/images/{job_id}").json()["status"] not in ("done", "failed"):
                    time.sleep(0.02)
                rss.append(round(_rss_mb(), 1))
            on_disk = sum(p.stat().st_size for p in Path(app.state.jobs._folder.name).iterdir()) / 2**20
    half = uploads // 2
    report = {"machine": machine_info(), "uploads": uploads, "image": "727x1026 uint16", "rss_mb": rss,
              "growth_mb_per_upload_second_half": round((rss[-1] - rss[half]) / (uploads - 1 - half), 3),
              "results_on_disk_mb": round(on_disk, 1)}
    emit_report(report, out)


if __name__ == "__main__":
    main()
