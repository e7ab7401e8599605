"""`samcell-rt bench`: latency and throughput per engine, batch size and image size, with an optional
peer run of the reference PyPI `samcell` pipeline on the same weights and images in the same process.

Per configuration: median seconds per stage (read, preprocess, engine, blend, watershed, measure),
tiles/s through the engine, images/s end to end, the share of wall time spent outside the engine,
the engine's idle share when several images run pipelined, and the peak resident memory.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .machine import machine_info

STAGE_NAMES = {"preprocess": "preprocess", "engine": "engine", "blend": "blend", "postprocess": "watershed",
               "measure": "measure"}


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '704x520' -> (520, 704) as (height, width)."""
    width, _, height = text.partition("x")
    return int(height or width), int(width)


class PeakRSS:
    """Samples this process's resident memory on a thread; `peak` in MiB."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()

    def _rss(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def bench_images(sizes: list[str], folder: Path) -> dict[str, Path]:
    """One synthetic 16-bit TIFF per size (cell density like a sub-confluent culture)."""
    import tifffile

    from .synthetic import as_dtype, synthetic_cells

    paths = {}
    for size in sizes:
        height, width = parse_size(size)
        image, _ = synthetic_cells((height, width), count=max(1, height * width // 6000), radius=12, seed=1)
        paths[size] = folder / f"bench-{size}.tif"
        tifffile.imwrite(paths[size], as_dtype(image, "uint16"))
    return paths


def _median(runs: list[dict]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def open_segmenter(model: str, engine: str, batch_size: int | None):
    """A Segmenter for an engine name, or for `openvino@bf16` / `openvino@fp32`: OpenVINO held to one
    precision, bypassing the bf16 guard, to measure what the guard's choice costs or gains."""
    from .registry import resolve_model
    from .runtime.segmenter import Segmenter

    name, _, precision = engine.partition("@")
    if not precision:
        return Segmenter(resolve_model(model), engine=engine, batch_size=batch_size)
    if name != "openvino":
        raise ValueError(f"{engine!r}: only openvino takes a fixed precision (openvino@bf16, openvino@fp32)")
    from .runtime.engines.openvino import OpenVinoEngine

    return Segmenter(OpenVinoEngine(resolve_model(model), precision=precision), batch_size=batch_size)


def bench_engine(model: str, engine: str, batch_size: int, images: dict[str, Path], repeats: int) -> list[dict]:
    """Rows for one engine and batch size over every image size."""
    return bench_segmenter(open_segmenter(model, engine, batch_size), images, repeats)


def bench_segmenter(segmenter, images: dict[str, Path], repeats: int) -> list[dict]:
    """Rows for one loaded segmenter over every image size (any engine object, e.g. a benchmark adapter)."""
    from .runtime.io import read_image
    from .runtime.tiling import tile_grid

    rows = []
    for size, path in images.items():
        frame = read_image(path).frames[0]
        segmenter.segment(frame)  # warm-up: compilation, allocations
        runs = []
        with PeakRSS() as memory:
            for _ in range(repeats):
                start = time.perf_counter()
                frame = read_image(path).frames[0]
                read = time.perf_counter() - start
                result = segmenter.segment(frame)
                total = time.perf_counter() - start
                runs.append({"read": read, **{STAGE_NAMES[k]: v for k, v in result.timings.items()}, "total": total})
        stages = _median(runs)
        stream = _pipelined(segmenter, frame, count=4)
        tiles = len(tile_grid(*frame.shape, tile=segmenter.info.tile))
        rows.append({"engine": segmenter.engine_name, "precision": segmenter.engine_precision,
                     "batch_size": segmenter.batch_size, "size": size,
                     "tiles": tiles, "cells": result.metrics["cells"], "seconds": stages,
                     "tiles_per_second": tiles / stages["engine"], "images_per_second": 1 / stages["total"],
                     "outside_engine_share": 1 - stages["engine"] / stages["total"], "peak_rss_mib": memory.peak,
                     **stream})
    return rows


def _pipelined(segmenter, frame: np.ndarray, count: int) -> dict[str, float]:
    """Several images through one pipelined `segment_many`: how much of the wall time the engine
    sits idle (waiting for preparation or post-processing) when work overlaps."""
    start = time.perf_counter()
    results = list(segmenter.segment_many([frame] * count, pipeline=True))
    wall = time.perf_counter() - start
    engine = sum(r.timings["engine"] for r in results)
    return {"pipelined_images_per_second": count / wall, "pipelined_engine_idle_share": max(0.0, 1 - engine / wall)}


def bench_peer(checkpoint: str, images: dict[str, Path], repeats: int) -> dict[str, float]:
    """Seconds per image of the reference pipeline on the same weights (uint8 input: it casts)."""
    from .export.checkpoints import load_checkpoint
    from .export.reference import reference_pipeline, reference_run
    from .runtime.io import read_image
    from .runtime.preprocess import to_uint8

    pipeline = reference_pipeline(load_checkpoint(checkpoint).model)
    seconds = {}
    for size, path in images.items():
        image = to_uint8(read_image(path).frames[0])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            reference_run(pipeline, image)
            times.append(time.perf_counter() - start)
        seconds[size] = statistics.median(times)
    return seconds


def run_bench(model: str, engines: list[str], sizes: list[str], batch_sizes: list[int | None], repeats: int = 3,
              peer_checkpoint: str | None = None, peer_repeats: int = 1) -> dict:
    """The whole benchmark; JSON-ready."""
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        images = bench_images(sizes, Path(tmp))
        rows = [row for engine in engines for batch in batch_sizes
                for row in bench_engine(model, engine, batch, images, repeats)]
        peer = bench_peer(peer_checkpoint, images, peer_repeats) if peer_checkpoint else None
    if peer:
        for row in rows:
            row["peer_seconds"] = peer[row["size"]]
            row["speedup_vs_peer"] = peer[row["size"]] / row["seconds"]["total"]
    return {"benchmark": "samcell-rt bench", "model": str(model), "repeats": repeats,
            "peer": {"package": "samcell 1.2.0", "checkpoint": peer_checkpoint, "seconds": peer} if peer else None,
            "rows": rows, "machine": bench_machine(load_before)}


def bench_machine(load_before: list[float]) -> dict:
    """machine_info plus how busy the machine was (1/5/15-minute load averages before and after: other
    jobs on a shared machine slow every engine, so compare rows of one run only)."""
    return {**machine_info(), "load_average": {"before": load_before, "after": list(os.getloadavg())}}


def markdown_table(report: dict) -> str:
    """A short table for the README."""
    peer = report.get("peer") is not None
    head = ("| engine | precision | batch | image | tiles | s/image | tiles/s | outside engine | engine idle (pipelined) "
            "| peak RSS MiB |") + \
        (" peer s/image | speed-up |" if peer else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in report["rows"]:
        line = (f"| {row['engine']} | {row.get('precision', '')} | {row['batch_size']} | {row['size']} | {row['tiles']} | "
                f"{row['seconds']['total']:.3f} | {row['tiles_per_second']:.2f} | {row['outside_engine_share']:.1%} | "
                f"{_percent(row.get('pipelined_engine_idle_share'))} | {row['peak_rss_mib']:.0f} |")
        if peer:
            line += f" {row['peer_seconds']:.2f} | {row['speedup_vs_peer']:.1f}x |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def plot(report: dict, path: str | Path) -> None:
    """Bar chart of seconds per image by size and engine, peer included (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(dict.fromkeys(row["size"] for row in report["rows"]))
    series: dict[str, list[float]] = {}
    for row in report["rows"]:
        label = f"samcell-rt {row['engine']} {row.get('precision', '')} b{row['batch_size']}"
        series.setdefault(label, []).append(row["seconds"]["total"])
    if report.get("peer"):
        series["reference samcell 1.2.0"] = [report["peer"]["seconds"][s] for s in sizes]
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        axis.bar(np.arange(len(sizes)) + i * width, values, width, label=name)
    axis.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, sizes)
    axis.set_ylabel("seconds per image")
    axis.set_title(report["machine"]["cpu"][:60])
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
