"""Seconds per image for several models in one run: SAMCell-Lite fp32 / int8 against full ViT-B.

Every model runs through the same runtime (`Segmenter`, onnxruntime, the engine and batch size
defaults for that engine) on the same synthetic 16-bit image; repeats are interleaved across models
so that machine noise hits all of them alike, and the median is reported with ratios to the first
model given.

    python benchmarks/model_speed.py --model vitb.onnx --model samcell_rt/models/samcell-lite.onnx \
        --model lite-int8.onnx --size 704x520 --repeats 3 --out benchmarks/results/model_speed_cpu.json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click

from samcell_rt.machine import emit_report, machine_info


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--size", default="704x520", show_default=True)
@click.option("--engine", default="cpu", show_default=True)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(models, size, engine, repeats, out) -> None:
    from samcell_rt.benchmark import bench_images
    from samcell_rt.runtime.io import read_image
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.runtime.tiling import tile_grid

    with tempfile.TemporaryDirectory() as tmp:
        frame = read_image(bench_images([size], Path(tmp))[size]).frames[0]
    segmenters = {path: Segmenter(path, engine=engine) for path in models}
    seconds: dict[str, list[float]] = {path: [] for path in models}
    for segmenter in segmenters.values():
        segmenter.segment(frame)  # warm-up
    for _ in range(repeats):
        for path, segmenter in segmenters.items():
            start = time.perf_counter()
            segmenter.segment(frame)
            seconds[path].append(time.perf_counter() - start)
    tiles = len(tile_grid(*frame.shape))
    first = statistics.median(seconds[models[0]])
    rows = [{"model": path, "size_mib": Path(path).stat().st_size / 2**20, "engine": seg.engine_name,
             "batch_size": seg.batch_size, "tiles": tiles, "runs": seconds[path],
             "seconds_per_image": statistics.median(seconds[path]),
             "seconds_per_tile": statistics.median(seconds[path]) / tiles,
             "speedup_vs_first": first / statistics.median(seconds[path])} for path, seg in segmenters.items()]
    emit_report({"benchmark": "model_speed", "machine": machine_info(), "size": size, "repeats": repeats,
                 "rows": rows}, out)


if __name__ == "__main__":
    main()
