"""`samcell-rt bench`: latency and throughput per engine, batch size and image size, with an optional
peer run of the reference PyPI `samcell` pipeline on the same weights and images in the same process.

Per configuration: median seconds per stage (read, preprocess, engine, blend, watershed, measure),
tiles/s through the engine, images/s end to end, the share of wall time spent outside the engine,
the engine's idle share when several images run pipelined, and the peak resident memory.

The configurations' repeats are interleaved (A B A B ...: round after round, each configuration
once per round), and every configuration's speed-up over the first one (and over the peer) is given
round by round with the 1-minute load average after each round: on a shared machine whose load
changes, rows measured one after the other compare different machines (two engines run one after
the other while the load fell read 1.86x; interleaved, the same pair read 0.93x).
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
PEER = "reference samcell 1.2.0"  # the label of the reference pipeline's runs


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


def bench_segmenter(segmenter, images: dict[str, Path], repeats: int) -> list[dict]:
    """Rows for one loaded segmenter over every image size (any engine object, e.g. a benchmark adapter)."""
    return bench_interleaved({segmenter.engine_name: segmenter}, images, repeats)[0]


def _segment_run(segmenter, path: Path):
    """One timed read + segment of `path`: seconds per stage and in all, and the cells found."""
    from .runtime.io import read_image

    def run() -> dict:
        start = time.perf_counter()
        frame = read_image(path).frames[0]
        read = time.perf_counter() - start
        result = segmenter.segment(frame)
        total = time.perf_counter() - start
        return {"read": read, **{STAGE_NAMES[k]: v for k, v in result.timings.items()}, "total": total,
                "cells": result.metrics["cells"]}

    return run


def _peer_run(pipeline, path: Path):
    """One timed run of the reference pipeline on `path` (uint8 input: it casts)."""
    from .export.reference import reference_run
    from .runtime.io import read_image
    from .runtime.preprocess import to_uint8

    image = to_uint8(read_image(path).frames[0])

    def run() -> dict:
        start = time.perf_counter()
        reference_run(pipeline, image)
        return {"total": time.perf_counter() - start}

    return run


def bench_interleaved(segmenters: dict[str, object], images: dict[str, Path], repeats: int,
                      peer=None) -> tuple[list[dict], list[dict]]:
    """(rows, pairs): each labelled segmenter (and the reference `peer` pipeline, if given) run on every
    image `repeats` times, interleaved round by round after one warm-up run each (compilation,
    allocations). A row per segmenter and size (its peak memory is the process's, every configuration
    loaded); a pair per size for each segmenter against the first one and against the peer, with the
    speed-up of every round."""
    from .runtime.io import read_image
    from .runtime.tiling import tile_grid

    rows, pairs = [], []
    for size, path in images.items():
        runners = {label: _segment_run(segmenter, path) for label, segmenter in segmenters.items()}
        if peer is not None:
            runners[PEER] = _peer_run(peer, path)
        for run in runners.values():
            run()
        runs: dict[str, list[dict]] = {label: [] for label in runners}
        loads = []
        with PeakRSS() as memory:
            for _ in range(repeats):
                for label, run in runners.items():
                    runs[label].append(run())
                loads.append(os.getloadavg()[0])
        frame = read_image(path).frames[0]
        for label, segmenter in segmenters.items():
            stages = _median([{k: v for k, v in run.items() if k != "cells"} for run in runs[label]])
            tiles = len(tile_grid(*frame.shape, tile=segmenter.info.tile))
            rows.append({"engine": segmenter.engine_name, "precision": segmenter.engine_precision, "label": label,
                         "batch_size": segmenter.batch_size, "size": size, "tiles": tiles,
                         "cells": runs[label][-1]["cells"], "seconds": stages,
                         "tiles_per_second": tiles / stages["engine"], "images_per_second": 1 / stages["total"],
                         "outside_engine_share": 1 - stages["engine"] / stages["total"],
                         "peak_rss_mib": memory.peak, **_pipelined(segmenter, frame, count=4)})
        pairs += round_pairs(size, {label: [run["total"] for run in found] for label, found in runs.items()}, loads)
    return rows, pairs


def round_pairs(size: str, seconds: dict[str, list[float]], loads: list[float]) -> list[dict]:
    """Each configuration against the first one and against the peer: its speed-up (baseline seconds /
    its seconds) round by round, their median, and the 1-minute load average after each round."""
    baselines = [next(iter(seconds)), *([PEER] if PEER in seconds else [])]
    def pair(base: str, label: str) -> dict:
        ratios = [b / t for b, t in zip(seconds[base], seconds[label])]
        return {"size": size, "label": label, "versus": base, "seconds": statistics.median(seconds[label]),
                "versus_seconds": statistics.median(seconds[base]), "speedups": ratios,
                "median_speedup": statistics.median(ratios), "load_average_1min": loads}

    return [pair(base, label) for base in baselines for label in seconds if label not in (base, PEER)]


def _pipelined(segmenter, frame: np.ndarray, count: int) -> dict[str, float]:
    """Several images through one pipelined `segment_many`: how much of the wall time the engine
    sits idle (waiting for preparation or post-processing) when work overlaps."""
    start = time.perf_counter()
    results = list(segmenter.segment_many([frame] * count, pipeline=True))
    wall = time.perf_counter() - start
    engine = sum(r.timings["engine"] for r in results)
    return {"pipelined_images_per_second": count / wall, "pipelined_engine_idle_share": max(0.0, 1 - engine / wall)}


def run_bench(model: str, engines: list[str], sizes: list[str], batch_sizes: list[int | None], repeats: int = 3,
              peer_checkpoint: str | None = None) -> dict:
    """The whole benchmark, every configuration (and the peer) interleaved; JSON-ready."""
    load_before = list(os.getloadavg())
    segmenters = {}
    for engine in engines:
        for batch in batch_sizes:
            segmenter = open_segmenter(model, engine, batch)
            segmenters[f"{engine} b{segmenter.batch_size}"] = segmenter
    peer = None
    if peer_checkpoint:
        from .export.checkpoints import load_checkpoint
        from .export.reference import reference_pipeline

        peer = reference_pipeline(load_checkpoint(peer_checkpoint).model)
    with tempfile.TemporaryDirectory() as tmp:
        rows, pairs = bench_interleaved(segmenters, bench_images(sizes, Path(tmp)), repeats, peer)
    peer_seconds = {p["size"]: p["versus_seconds"] for p in pairs if p["versus"] == PEER}
    for row in rows if peer else ():
        versus = next(p for p in pairs if (p["size"], p["label"], p["versus"]) == (row["size"], row["label"], PEER))
        row["peer_seconds"], row["speedup_vs_peer"] = versus["versus_seconds"], versus["median_speedup"]
    return {"benchmark": "samcell-rt bench", "model": str(model), "repeats": repeats, "interleaved": True,
            "peer": {"package": "samcell 1.2.0", "checkpoint": peer_checkpoint, "seconds": peer_seconds}
            if peer else None,
            "rows": rows, "pairs": pairs, "machine": bench_machine(load_before)}


def bench_machine(load_before: list[float]) -> dict:
    """machine_info plus how busy the machine was (1/5/15-minute load averages before and after: other
    jobs on a shared machine slow every engine, so compare rows of one run only)."""
    return {**machine_info(), "load_average": {"before": load_before, "after": list(os.getloadavg())}}


def markdown_table(report: dict) -> str:
    """Short tables for the README: the rows, then the round-by-round speed-ups."""
    peer = report.get("peer") is not None
    head = ("| engine | precision | batch | image | tiles | s/image | tiles/s | outside engine | engine idle (pipelined) "
            "| peak RSS MiB |") + (" peer s/image | speed-up vs peer |" if peer else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in report["rows"]:
        line = (f"| {row['engine']} | {row.get('precision', '')} | {row['batch_size']} | {row['size']} | {row['tiles']} | "
                f"{row['seconds']['total']:.3f} | {row['tiles_per_second']:.2f} | {row['outside_engine_share']:.1%} | "
                f"{_percent(row.get('pipelined_engine_idle_share'))} | {row['peak_rss_mib']:.0f} |")
        if peer:
            line += f" {row['peer_seconds']:.2f} | {row['speedup_vs_peer']:.1f}x |"
        lines.append(line)
    if report.get("pairs"):
        lines += ["", "| image | configuration | versus | speed-up per round (interleaved) | median | load (1 min) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {p['size']} | {p['label']} | {p['versus']} | {', '.join(f'{x:.2f}x' for x in p['speedups'])} | "
                  f"{p['median_speedup']:.2f}x | {', '.join(f'{x:.2f}' for x in p['load_average_1min'])} |"
                  for p in report["pairs"]]
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
        series[PEER] = [report["peer"]["seconds"][s] for s in sizes]
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
