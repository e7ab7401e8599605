"""Engine seconds per tile of the cpu engine and OpenVINO (fp32, bf16) measured in alternation, round
after round, so a shared machine's changing load falls on every engine alike (`samcell-rt bench`
measures engines one after another). The tiles are those of the 704x520 bench image.

    python benchmarks/openvino_interleaved.py --model samcell-lite --rounds 5 \
        --out benchmarks/results/openvino_interleaved_lite_cpu.json
"""

from __future__ import annotations

import os
import statistics
import time

import click


@click.command()
@click.option("--model", default="samcell-lite", show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(model: str, rounds: int, out) -> None:
    import tempfile
    from pathlib import Path

    from samcell_rt.benchmark import bench_images, bench_machine
    from samcell_rt.machine import emit_report
    from samcell_rt.registry import resolve_model
    from samcell_rt.runtime.engines import open_engine
    from samcell_rt.runtime.engines.openvino import OpenVinoEngine
    from samcell_rt.runtime.io import read_image
    from samcell_rt.runtime.preprocess import enhance_tiles, to_uint8
    from samcell_rt.runtime.tiling import extract_tiles, tile_grid

    load_before = list(os.getloadavg())
    path = resolve_model(model)
    engines = {"cpu fp32": open_engine(path, "cpu"), "openvino fp32": OpenVinoEngine(path, precision="fp32"),
               "openvino bf16": OpenVinoEngine(path, precision="bf16")}
    with tempfile.TemporaryDirectory() as tmp:
        image = to_uint8(read_image(bench_images(["704x520"], Path(tmp))["704x520"]).frames[0])
    tiles = enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=256)))[:, None]
    for engine in engines.values():
        engine.run(tiles[:1])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            for tile in tiles:
                engine.run(tile[None])
            seconds[name].append((time.perf_counter() - start) / len(tiles))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    emit_report({"model": str(path), "tiles": len(tiles), "rounds": rounds, "seconds_per_tile": seconds,
                 "median_seconds_per_tile": medians,
                 "speedup_vs_cpu": {name: medians["cpu fp32"] / m for name, m in medians.items()},
                 "machine": bench_machine(load_before)}, out)


if __name__ == "__main__":
    main()
