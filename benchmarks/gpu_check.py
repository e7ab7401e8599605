"""The GPU check's measurements on a lent H100/H200, one route per device call (driven by gpu_check.sh).

Route `main` (nothing carried but the tree; the machine's own torch with CUDA 13):
- environment: GPU, compute capability, torch/CUDA/cuDNN versions, TF32 settings, and why
  TensorRT-RTX is not tried (its engines cannot run on compute capability 9.0);
- torch_lite, torch_vitb: SAMCell-Lite and SAM ViT-B (random weights: speed does not depend on them)
  through the BENCHMARK ADAPTER (torch_engine.py; not a product engine): fp32 / fp16 / bf16
  autocast x CUDA graphs on/off x batch 32/8/1. Per row: tiles/s and ms of one engine call as
  the pipeline makes it (host-device copies included), max abs difference from fp32 eager on the
  same tiles, peak GPU memory;
- e2e_lite, e2e_vitb, real_maps_lite: one 2048x2048 image end to end through samcell-rt's own
  Segmenter (tiling, CLAHE, blending, watershed, measurements) with the adapter at the fastest
  batch-32 setting the sweep found (`samcell_rt.benchmark.bench_segmenter`: seconds per stage, tiles/s, share of time
  outside the engine, pipelined images/s). Random weights give noise maps, whose watershed costs
  differ from real ones, so for Lite the shipped model also runs once on the machine's CPU
  onnxruntime: its post-processing stages work on real maps, and `real_outside_engine_share`
  combines those seconds with the adapter's engine seconds;
- pytest_gpu: the `gpu`-marked tests of the adapter.
Route `ort` (after onnxruntime-gpu arrived in parts): the CUDA engine (onnxruntime-gpu) on the
shipped Lite model through `samcell_rt.benchmark.run_bench`, batch 1/8/32 on 2048x2048.

Each step's result, or its error, is written to OUT/gpu_check_<route>.json when it ends (sweeps
after every row), so a call cut short still returns what it measured; a step that would not fit
in what is left of the call's budget is recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import gpu_plan
import numpy as np

from samcell_rt.runtime.atomic import write_text_atomic

WORK = Path("/tmp/gpu_check")
SWEEP = [(precision, graphs, batch) for precision in ("bf16", "fp16", "fp32") for graphs in (True, False)
         for batch in (32, 8, 1)]
MODELS = {"lite": "lite", "vitb": "vit-b", "tiny": "tiny-256"}  # step suffix -> export config name (tiny: CPU smoke)
DEVICE = "cuda"  # `--device cpu` runs the same steps on torch CPU, to try the script without a GPU
ROW_SECONDS = 10  # what one sweep row may need; rows that would not fit are skipped


class Record:
    """Everything measured in one call, saved to `path` after each step; the call's budget."""

    def __init__(self, path: Path, budget_s: float) -> None:
        self.path, self.begin = path, time.monotonic()
        self.deadline = self.begin + budget_s
        self.data: dict = {"started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "budget_s": budget_s, "steps": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.data["seconds_so_far"] = round(time.monotonic() - self.begin, 1)
        write_text_atomic(self.path, json.dumps(self.data, indent=1, default=str))

    def partial(self, name: str, value) -> None:
        """Store what a long step has measured so far."""
        self.data["steps"][name] = {"partial": value}
        self.save()

    def step(self, name: str, need_s: float, func, *args, summary=None):
        """Run one step unless it would overrun; store its result (or `summary(result)`) or its error;
        return the result."""
        if self.left() < need_s:
            self.data["steps"][name] = {"skipped": f"needs ~{need_s:.0f} s, {self.left():.0f} s of the budget left"}
            self.save()
            return None
        start = time.perf_counter()
        result = None
        try:
            result = func(*args)
            entry = {"result": summary(result) if summary else result}
        except Exception as exc:  # recorded, never fatal: later steps still run
            entry = {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc(limit=6)}
        entry["seconds"] = round(time.perf_counter() - start, 1)
        self.data["steps"][name] = entry
        self.save()
        print(f"[gpu_check] {name}: {'ok' if 'result' in entry else entry['error'][:300]} ({entry['seconds']} s)",
              flush=True)
        return result


def environment() -> dict:
    import torch

    from samcell_rt.machine import machine_info

    if DEVICE != "cuda":
        return {"machine": machine_info(), "torch": torch.__version__, "device": DEVICE}
    props = torch.cuda.get_device_properties(0)
    capability = f"{props.major}.{props.minor}"
    rtx = gpu_plan.settings()["packages"]["tensorrt-rtx-cu13-libs"]["never_carried"]
    return {"machine": machine_info(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "gpu": props.name, "compute_capability": capability,
            "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "tensorrt_rtx": f"not attempted on compute capability {capability}: {rtx}"}


def shipped_lite():
    """(path, ModelInfo) of the shipped default model: the adapter takes its tile size and thresholds."""
    import onnx

    from samcell_rt.registry import resolve_model
    from samcell_rt.runtime.contract import ModelInfo

    path = resolve_model("samcell-lite")
    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    return path, ModelInfo.from_props(path, props)


def random_module(config: str):
    from samcell_rt.export import model as models

    return models.SamCellTiles(models.random_sam(models.config_by_name(config), seed=0))


def sweep(record: Record, name: str, module, info) -> dict:
    """Tiles/s per precision, CUDA graphs on/off and batch size (rows saved as they come)."""
    from torch_engine import TorchEngine

    tiles = np.random.default_rng(0).integers(0, 256, (32, 1, info.tile, info.tile), dtype=np.uint8)
    reference = TorchEngine(module, info, "fp32", DEVICE, batch=8).run(tiles[:8])
    rows: list[dict] = []
    for precision, graphs, batch in SWEEP:
        setting = {"precision": precision, "graphs": graphs, "batch": batch}
        if record.left() < ROW_SECONDS:
            rows.append({**setting, "skipped": "budget"})
            continue
        rows.append({**setting, **timed(module, info, setting, tiles[:batch], reference)})
        record.partial(name, rows)
    return {"weights": "random (seed 0): speed does not depend on them", "rows": rows}


def timed(module, info, setting: dict, tiles: np.ndarray, reference: np.ndarray) -> dict:
    """One engine call's speed (at least 3 calls, about a second), its error and peak GPU memory."""
    import torch
    from torch_engine import TorchEngine

    engine = None
    gpu = DEVICE == "cuda"
    try:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        engine = TorchEngine(module, info, setting["precision"], DEVICE, setting["batch"], setting["graphs"])
        maps = engine.run(tiles)
        engine.run(tiles)
        runs, start = 0, time.perf_counter()
        while runs < 3 or (time.perf_counter() - start < 1.0 and runs < 50):
            engine.run(tiles)
            runs += 1
        seconds = (time.perf_counter() - start) / runs
        shared = min(len(tiles), len(reference))
        return {"tiles_per_second": round(len(tiles) / seconds, 1), "ms_per_call": round(seconds * 1e3, 2),
                "max_abs_diff_vs_fp32_eager": float(np.abs(maps[:shared] - reference[:shared]).max()),
                "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if gpu else None}
    except Exception as exc:  # one setting failing (a graph capture, memory) must not end the sweep
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        del engine
        if gpu:
            torch.cuda.empty_cache()


def fastest(sweep_result: dict | None) -> tuple[str, bool]:
    """(precision, graphs) of the fastest batch-32 row that ran; bf16 eager when none did."""
    rows = [r for r in (sweep_result or {}).get("rows", []) if r["batch"] == 32 and "tiles_per_second" in r]
    best = max(rows, key=lambda r: r["tiles_per_second"], default={"precision": "bf16", "graphs": False})
    return best["precision"], best["graphs"]


def end_to_end(module, info, precision: str, graphs: bool, size: str) -> dict:
    """One image (2048x2048 by default) through samcell-rt's pipeline with the adapter (batch 32 and 8).
    Never rescaled (diameter "off"): cells found in random weights' maps must not trigger a second pass."""
    from torch_engine import TorchEngine

    from samcell_rt.benchmark import bench_images, bench_segmenter
    from samcell_rt.runtime.segmenter import Segmenter

    images = bench_images([size], WORK)
    rows = [row for batch in (32, 8)
            for row in bench_segmenter(Segmenter(TorchEngine(module, info, precision, DEVICE, batch, graphs),
                                                 batch_size=batch, diameter="off"), images, repeats=2)]
    return {"weights": "random (seed 0)", "image": str(images[size]), "rows": rows}


def real_outside_engine(model: Path, e2e: dict) -> dict:
    """The shipped model once on the machine's CPU onnxruntime: stage seconds on real distance maps,
    and the share outside the engine they give beside each adapter row's engine seconds."""
    from samcell_rt.runtime.io import read_image
    from samcell_rt.runtime.segmenter import Segmenter

    rows = e2e["rows"]
    result = Segmenter(model, engine="cpu", diameter="off").segment(read_image(e2e["image"]).frames[0])
    outside = sum(seconds for stage, seconds in result.timings.items() if stage != "engine")
    return {"engine": "cpu (onnxruntime, shipped weights)", "seconds": result.timings, "cells": result.metrics["cells"],
            "real_outside_engine_share": {f"{row['engine']} b{row['batch_size']}":
                                          outside / (outside + row["seconds"]["engine"]) for row in rows}}


def pytest_gpu(seconds: float) -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "tests/benchmarks"], capture_output=True, text=True, timeout=seconds)
    return {"returncode": done.returncode, "tail": done.stdout[-3000:] + done.stderr[-1000:]}


def main_route(record: Record, models: list[str], size: str) -> None:
    record.step("environment", 5, environment)
    found = record.step("shipped_model", 5, shipped_lite, summary=lambda r: asdict(r[1]))
    real_model, info = found if found else (None, None)
    if info is None:
        return
    for suffix in models:
        module = record.step(f"build_{suffix}", 15, random_module, MODELS[suffix],
                             summary=lambda m: {"parameters": sum(p.numel() for p in m.parameters())})
        if module is None:
            continue
        swept = record.step(f"torch_{suffix}", 60, sweep, record, f"torch_{suffix}", module, info)
        precision, graphs = fastest(swept)
        e2e = record.step(f"e2e_{suffix}", 60, end_to_end, module, info, precision, graphs, size)
        if e2e and suffix == "lite":
            record.step("real_maps_lite", 40, real_outside_engine, real_model, e2e)
        del module
    record.step("pytest_gpu", 30, pytest_gpu, max(10.0, record.left() - 5))


def ort_environment() -> dict:
    """onnxruntime-gpu as rebuilt from the parts, with the CUDA libraries it needs loaded first."""
    import onnxruntime
    import torch  # noqa: F401  loads the CUDA libraries torch brings (cuBLAS, cuDNN) for onnxruntime's provider

    onnxruntime.preload_dlls()
    return {"onnxruntime": onnxruntime.__version__, "file": onnxruntime.__file__,
            "providers": onnxruntime.get_available_providers()}


def ort_route(record: Record) -> None:
    from samcell_rt.benchmark import run_bench

    if record.step("environment", 5, ort_environment) is not None:
        record.step("bench_cuda_lite", 60, run_bench, "samcell-lite", ["cuda"], ["2048"], [1, 8, 32], 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GPU check measurements (one device call)")
    parser.add_argument("route", choices=("main", "ort"))
    parser.add_argument("--budget", type=float, required=True, help="seconds this call may work")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", help="cpu: try the main route's steps without a GPU")
    parser.add_argument("--models", default="lite,vitb", help=f"main route: some of {', '.join(MODELS)}")
    parser.add_argument("--size", default="2048", help="main route: the end-to-end image size")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    WORK.mkdir(parents=True, exist_ok=True)
    record = Record(args.out / f"gpu_check_{args.route}.json", args.budget)
    record.save()
    if args.route == "main":
        main_route(record, args.models.split(","), args.size)
    else:
        ort_route(record)
    record.data["finished"] = True
    record.save()
    print(f"[gpu_check] {args.route}: {record.data['seconds_so_far']} s, wrote {record.path}")


if __name__ == "__main__":
    main()
