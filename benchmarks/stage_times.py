"""Per-stage times of one large image with the blob test model: the runtime's own overhead.

The blob model costs almost nothing, so this shows how long reading-side preprocessing (scaling,
tiling, CLAHE), blending and watershed take next to any real engine.

    python benchmarks/stage_times.py --size 2048 --out benchmarks/results/stage_times_cpu.json
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from samcell_rt.machine import emit_report, machine_info


@click.command()
@click.option("--size", default=2048, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(size: int, repeats: int, batch_size: int, out: Path | None) -> None:
    from samcell_rt import load_model
    from samcell_rt.synthetic import as_dtype, blob_model, synthetic_cells

    with tempfile.TemporaryDirectory() as tmp:
        segmenter = load_model(str(blob_model(Path(tmp) / "blob.onnx")), batch_size=batch_size)
    image = as_dtype(synthetic_cells((size, size), count=size * size // 7000, seed=0)[0], "uint16")
    segmenter.segment(image)  # warm-up: numba compilation, onnxruntime allocations
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = segmenter.segment(image)
        runs.append({"total": time.perf_counter() - start, **result.timings})
    median = {key: sorted(r[key] for r in runs)[len(runs) // 2] for key in runs[0]}
    report = {"benchmark": "stage_times", "image": f"{size}x{size} uint16", "tiles": _tiles(size),
              "cells": result.metrics["cells"],
              "model": "blob test model (blur + sigmoid)", "median_seconds": median, "machine": machine_info()}
    emit_report(report, out)


def _tiles(size: int) -> int:
    from samcell_rt.runtime.tiling import tile_grid

    return len(tile_grid(size, size))


if __name__ == "__main__":
    main()
