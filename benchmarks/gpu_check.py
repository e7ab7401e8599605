"""The GPU check's Python steps (driven by benchmarks/gpu_check.sh on a lent H100/H200).

Steps, each recorded even when it fails:
- graphs: SAM ViT-B (random weights: speed does not depend on them) exported to fp32 ONNX, and the
  fp16 graph of it and of the shipped samcell-lite, derived as `build-engine --precision fp16` does;
- bench: `samcell-rt bench` with the CUDA engine (onnxruntime-gpu) per model and precision, batch
  1/8/32, on a 2048x2048 image: tiles/s, seconds end to end, share of time outside the engine;
- torch: the same models in torch fp16 on the GPU (SamCellTiles, batch 1/8/32 tiles/s), as reference;
- rtx: build a TensorRT-RTX engine of samcell-lite and try to run it (expected refused on sm 9.0).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 32)


def step(record: dict, name: str, func, *args):
    """Run one step; store its result or its error, and its seconds."""
    start = time.perf_counter()
    try:
        record[name] = {"result": func(*args)}
    except Exception as exc:  # recorded, never fatal: later steps still run
        record[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}
    record[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(f"[gpu_check] {name}: {'ok' if 'result' in record[name] else record[name]['error'][:300]}", flush=True)


def graphs(work: Path) -> dict:
    import torch
    from samcell_rt.registry import resolve_model

    from samcell_rt.export.fp16 import derive_fp16
    from samcell_rt.export.model import random_sam, vit_b_config
    from samcell_rt.export.onnx import export_onnx

    vitb_pt = work / "vitb-random.pt"
    torch.save(random_sam(vit_b_config(), seed=0).state_dict(), vitb_pt)
    export_onnx(vitb_pt, work / "vitb-fp32.onnx", name="vitb-random")
    out = {"vitb-fp32": str(work / "vitb-fp32.onnx"), "lite-fp32": str(resolve_model("samcell-lite"))}
    for name in ("vitb", "lite"):
        graph = derive_fp16(out[f"{name}-fp32"], work / f"{name}-fp16.onnx")
        out[f"{name}-fp16"] = str(graph.path)
        out[f"{name}-fp16-max-abs-error"] = graph.max_abs_error
    return out


def bench(model: str, out: Path) -> dict:
    command = [sys.executable, "-c", "from samcell_rt.cli import main; main()", "bench", "--model", model,
               "--engines", "cuda", "--sizes", "2048", "--batch-sizes", ",".join(map(str, BATCHES)), "--repeats", "2",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    report = json.loads(out.read_text())
    return {"rows": [{k: r.get(k) for k in ("engine", "batch_size", "size", "tiles", "tiles_per_second",
                                            "outside_engine_share", "seconds")} for r in report["rows"]]}


def torch_fp16(config_name: str) -> dict:
    import torch

    from samcell_rt.export import model as models

    wrapper = models.SamCellTiles(models.random_sam(getattr(models, config_name)(), seed=0)).eval().cuda().half()
    rates = {}
    with torch.no_grad():
        for batch in BATCHES:
            tiles = torch.randint(0, 256, (batch, 1, 256, 256), dtype=torch.uint8, device="cuda")
            wrapper(tiles)
            torch.cuda.synchronize()
            start, repeats = time.perf_counter(), 5
            for _ in range(repeats):
                wrapper(tiles)
            torch.cuda.synchronize()
            rates[batch] = batch * repeats / (time.perf_counter() - start)
    return {"tiles_per_second": rates, "weights": "random (speed does not depend on them)"}


def rtx_attempt(work: Path) -> dict:
    from samcell_rt.export.tensorrt import build_engine, describe_build
    from samcell_rt.runtime.engines import open_engine

    report = build_engine("samcell-lite", work / "lite-rtx-fp16.engine", precision="fp16", runtime="rtx")
    result = {"build": describe_build(report)}
    try:
        engine = open_engine(report.path, "tensorrt")
        start = time.perf_counter()
        engine.run(np.zeros((8, 1, 256, 256), np.uint8))
        result["ran"] = f"8 tiles in {time.perf_counter() - start:.3f} s (first run, JIT included)"
    except Exception as exc:
        result["refused"] = f"{type(exc).__name__}: {exc}"
    return result


def main(work: Path, result_path: Path, pytest_json: Path) -> None:
    from samcell_rt.machine import machine_info

    work.mkdir(parents=True, exist_ok=True)
    record: dict = {"machine": machine_info(), "pytest_gpu": json.loads(pytest_json.read_text()) if pytest_json.exists()
                    else None}
    step(record, "graphs", graphs, work)
    made = record["graphs"].get("result", {})
    for key in ("lite-fp32", "lite-fp16", "vitb-fp32", "vitb-fp16"):
        if key in made:
            step(record, f"bench_cuda_{key}", bench, made[key], work / f"bench-{key}.json")
    step(record, "torch_fp16_lite", torch_fp16, "lite_config")
    step(record, "torch_fp16_vitb", torch_fp16, "vit_b_config")
    step(record, "tensorrt_rtx", rtx_attempt, work)
    result_path.write_text(json.dumps(record, indent=2, default=str))
    print(f"[gpu_check] wrote {result_path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
