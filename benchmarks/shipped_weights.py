"""The shipped model stored once (weights + weight-free graph) against the two ONNX files it replaced.

Measures, on one machine in one run: the tracked tree before and after (git blob sizes), the first
use (the complete ONNX made in a fresh user cache; int8 derived from it), a warm load (cache hit:
sha256 checks) and the onnxruntime session start, distance maps of old and new files (verification
tiles, tiles of the demo frame), the labels `samcell-rt demo`'s image gets through `Segmenter`, and
onnxruntime CPU seconds per tile, old and new graph interleaved.

    PYTHONPATH=$PWD python benchmarks/shipped_weights.py --old-ref 0edffa7 \
        --report benchmarks/results/shipped_weights_cpu.json
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info

OLD_FILES = {"samcell-lite": "samcell_rt/models/samcell-lite.onnx",
             "samcell-lite-int8": "samcell_rt/models/samcell-lite-int8.onnx"}


def tree_bytes(ref: str) -> dict:
    """Tracked bytes at a commit, all files and the model folder."""
    rows = subprocess.run(["git", "ls-tree", "-r", "-l", ref], capture_output=True, text=True, check=True).stdout
    sizes = [(line.split("\t")[1], int(line.split()[3])) for line in rows.splitlines() if line.split()[3] != "-"]
    return {"total": sum(s for _, s in sizes), "models": sum(s for p, s in sizes if p.startswith("samcell_rt/models/"))}


def old_file(ref: str, path: str, folder: Path) -> Path:
    out = folder / Path(path).name
    out.write_bytes(subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, check=True).stdout)
    return out


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def first_and_warm_loads(repeats: int) -> dict:
    """Median seconds: first use in a fresh cache (fp32, then int8), cache hits, session starts."""
    from samcell_rt.shipped import materialise

    first, first_int8, warm = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as home:
            os.environ["SAMCELL_RT_HOME"] = home
            seconds, path = timed(lambda: materialise("samcell-lite"))
            first.append(seconds)
            first_int8.append(timed(lambda: materialise("samcell-lite-int8"))[0])
            warm += [timed(lambda: materialise("samcell-lite"))[0] for _ in range(3)]
            sizes = {"complete_fp32_bytes": path.stat().st_size,
                     "complete_int8_bytes": materialise("samcell-lite-int8").stat().st_size}
    os.environ.pop("SAMCELL_RT_HOME")
    return {"first_use_s": float(np.median(first)), "first_use_int8_after_fp32_s": float(np.median(first_int8)),
            "warm_cache_hit_s": float(np.median(warm)), "repeats": repeats, **sizes}


def session_start(path: Path) -> float:
    """Seconds to open an onnxruntime CPU session on a model file."""
    import onnxruntime as ort

    return timed(lambda: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))[0]


def demo_tiles(image: np.ndarray) -> np.ndarray:
    from samcell_rt.runtime.preprocess import enhance_tiles, to_uint8
    from samcell_rt.runtime.tiling import extract_tiles, tile_grid

    image = to_uint8(image)
    return enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=256)))[:, None]


def demo_labels(image_path: Path, paths: dict[str, Path]) -> dict:
    """Labels of the demo frame through `Segmenter`, old and new file: agreement and scores vs its reference."""
    import tifffile

    from samcell_rt.evaluate import score_pair
    from samcell_rt.runtime.segmenter import Segmenter

    image = tifffile.imread(image_path)
    reference = tifffile.imread(image_path.parent / "reference" / image_path.name)
    out = {k: Segmenter(p, engine="cpu").segment(image) for k, p in paths.items()}
    scores = {k: score_pair(reference, v.labels) for k, v in out.items()}
    return {"image": image_path.name, "cells": {k: int(v.labels.max()) for k, v in out.items()},
            "labels_identical": bool(np.array_equal(out["old"].labels, out["new"].labels)),
            "pixels_labelled_differently": int((out["old"].labels != out["new"].labels).sum()),
            "pixels": int(image.size),
            "seg_det_vs_reference": {k: [round(v.seg, 4), round(v.det, 4)] for k, v in scores.items()},
            "max_abs_distance_map_diff": float(np.abs(out["old"].distance - out["new"].distance).max())}


def per_tile_seconds(paths: dict[str, Path], tiles: np.ndarray, repeats: int) -> dict[str, float]:
    """Median onnxruntime CPU seconds per tile (batch 1), the graphs interleaved tile by tile."""
    import onnxruntime as ort

    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    times = {k: [] for k in paths}
    for session in sessions.values():
        session.run(None, {"tiles": tiles[:1]})
    for _ in range(repeats):
        for tile in tiles:
            for key, session in sessions.items():
                times[key].append(timed(lambda: session.run(None, {"tiles": tile[None]}))[0])
    return {k: float(np.median(v)) for k, v in times.items()}


@click.command()
@click.option("--old-ref", default="0edffa7", show_default=True, help="commit that still shipped the two ONNX files")
@click.option("--repeats", default=3, show_default=True)
@click.option("--report", type=click.Path(path_type=Path), default=None)
def main(old_ref: str, repeats: int, report: Path | None) -> None:
    import tifffile

    from samcell_rt.export.onnx import graph_maps, verification_tiles
    from samcell_rt.package_files import write_demo
    from samcell_rt.shipped import SHIPPED, graph_file, materialise, weights_file

    result = {"machine": machine_info(), "load_average_1min_at_start": os.getloadavg()[0],
              "tree_bytes": {"before": tree_bytes(old_ref), "after": tree_bytes("HEAD")},
              "shipped_files_bytes": {"weights": weights_file("samcell-lite").stat().st_size,
                                      "graph": graph_file("samcell-lite").stat().st_size},
              "sha256": {"weights": SHIPPED["samcell-lite"].weights_sha256, "graph": SHIPPED["samcell-lite"].graph_sha256}}
    loads = first_and_warm_loads(repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = {name: old_file(old_ref, path, tmp) for name, path in OLD_FILES.items()}
        new = {name: materialise(name) for name in OLD_FILES}
        loads["session_start_s"] = {k: float(np.median([session_start(p["samcell-lite"]) for _ in range(repeats)]))
                                    for k, p in (("old", old), ("new", new))}
        result["loads"] = loads
        image_path = write_demo(tmp / "demo")
        image = tifffile.imread(image_path)
        tile_sets = {"verification": verification_tiles(256), "demo_frame": demo_tiles(image)}
        maps = {(version, name, key): graph_maps(files[name], tiles) for version, files in (("old", old), ("new", new))
                for name in OLD_FILES for key, tiles in tile_sets.items()}
        result["max_abs_map_diff_new_vs_old"] = {
            name: {key: float(np.abs(maps["new", name, key] - maps["old", name, key]).max()) for key in tile_sets}
            for name in OLD_FILES}
        result["int8_max_abs_map_diff_vs_its_fp32"] = {
            version: {key: float(np.abs(maps[version, "samcell-lite-int8", key] - maps[version, "samcell-lite", key]).max())
                      for key in tile_sets} for version in ("old", "new")}
        result["demo_image"] = demo_labels(image_path, {k: p["samcell-lite"] for k, p in (("old", old), ("new", new))})
        speed = per_tile_seconds({"old": old["samcell-lite"], "new": new["samcell-lite"]}, tile_sets["demo_frame"][:4], repeats)
        result["per_tile_s_onnxruntime_cpu"] = {**speed, "new_over_old": speed["new"] / speed["old"]}
    emit_report(result, report)


if __name__ == "__main__":
    main()
