"""Parity harness: samcell-rt against the PyPI `samcell` 1.2.0 pipeline on the same weights and images.

Builds (or loads) a SamModel, saves it in the published SAMCell checkpoint format, exports it with
samcell-rt at each precision, and runs both pipelines on the same images in the same process.
Reports max abs difference of the full distance maps (over the pixels the reference blends with
non-zero weight, and over all pixels), label agreement (mean best-match IoU of the reference's
cells), and seconds per tile and per image for each side.

    python benchmarks/parity.py --random vit-b --precisions fp32,int8,fp16 --out benchmarks/results/parity_vitb_cpu.json
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info


def synthetic_images(shape: tuple[int, int], count: int) -> list[np.ndarray]:
    from samcell_rt.synthetic import as_dtype, synthetic_cells

    return [as_dtype(synthetic_cells(shape, count=60, radius=14, seed=s)[0], "uint8") for s in range(count)]


def reference_valid_mask(shape: tuple[int, int]) -> np.ndarray:
    """Pixels the reference blends with total weight > 1e-4 (it fills the rest from wrong pixels)."""
    from samcell_rt.runtime.tiling import edge_weights, tile_grid

    weight = edge_weights().astype(np.float64) - 1e-12  # the reference's weights have no floor
    total = np.zeros(shape)
    for y, x in tile_grid(*shape).origins:
        h, w = min(256, shape[0] - y), min(256, shape[1] - x)
        total[y : y + h, x : x + w] += weight[:h, :w]
    return total > 1e-4


def mean_matched_iou(reference: np.ndarray, ours: np.ndarray) -> float:
    from samcell_rt.synthetic import matched_iou

    scores = matched_iou(reference, ours)
    return float(np.mean(scores)) if scores else 1.0


@click.command()
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--random", "random_config", type=click.Choice(["vit-b", "tiny"]), default=None,
              help="Use seeded random weights of this configuration instead of a checkpoint.")
@click.option("--precisions", default="fp32,int8,fp16", show_default=True)
@click.option("--size", default="704x520", show_default=True, help="WxH of the synthetic images.")
@click.option("--images", "image_count", default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(checkpoint, random_config, precisions, size, image_count, out) -> None:
    import torch

    from samcell_rt import load_model
    from samcell_rt.export.checkpoints import load_checkpoint
    from samcell_rt.export.model import config_by_name, random_sam
    from samcell_rt.export.onnx import export_model
    from samcell_rt.export.reference import reference_pipeline, reference_run
    from samcell_rt.runtime.postprocess import labels_from_distance

    width, height = (int(v) for v in size.split("x"))
    images = synthetic_images((height, width), image_count)
    tmp = Path(tempfile.mkdtemp(prefix="parity-"))
    config = None
    if checkpoint is None:
        config = config_by_name(random_config or "tiny")
        checkpoint = tmp / "samcell-random.pt"
        torch.save(random_sam(config).state_dict(), checkpoint)  # the published format: a SamModel state dict
    model = load_checkpoint(checkpoint, config).model
    torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))

    ref_pipe = reference_pipeline(model)
    reference = []
    for image in images:
        start = time.perf_counter()
        _, dist = reference_run(ref_pipe, image)
        reference.append((dist, time.perf_counter() - start))
    # Random weights give no cell-like maps; threshold at the reference map's own percentiles so
    # the label comparison has many regions. A real checkpoint uses the paper's 0.47 / 0.09.
    peak, fill = (0.47, 0.09) if random_config is None else (
        float(np.percentile(reference[0][0], 85)), float(np.percentile(reference[0][0], 50)))
    ref_labels = [ref_pipe.cells_from_dist_map(d, peak, fill) for d, _ in reference]
    del ref_pipe, model  # free the torch model before exporting (ViT-B export peaks at ~5.5 GB)
    valid = reference_valid_mask((height, width))
    from samcell_rt.runtime.tiling import tile_grid

    tiles = len(tile_grid(height, width))
    report = {"benchmark": "parity", "weights": str(random_config and f"random {random_config}" or checkpoint),
              "images": f"{image_count} synthetic {width}x{height} uint8", "tiles_per_image": tiles,
              "thresholds": {"peak": peak, "fill": fill},
              "reference": {"seconds_per_image": float(np.mean([t for _, t in reference])),
                            "seconds_per_tile": float(np.mean([t for _, t in reference])) / tiles},
              "samcell_rt": {}, "machine": machine_info()}
    for precision in precisions.split(","):
        start = time.perf_counter()
        onnx_path = tmp / f"model-{precision}.onnx"
        export = export_model(checkpoint, onnx_path, precision=precision, config=config)
        export_seconds = time.perf_counter() - start
        segmenter = load_model(str(onnx_path), batch_size=1, peak=peak, fill=fill)  # CPU: batching does not help
        segmenter.segment(images[0][:256, :256])  # warm-up
        diffs, diffs_all, ious, seconds, engine = [], [], [], [], []
        for image, (ref_dist, _), ref_lab in zip(images, reference, ref_labels):
            start = time.perf_counter()
            result = segmenter.segment(image)
            seconds.append(time.perf_counter() - start)
            engine.append(result.timings["engine"])
            diff = np.abs(result.distance - ref_dist)
            diffs.append(float(diff[valid].max()))
            diffs_all.append(float(diff.max()))
            ious.append(mean_matched_iou(ref_lab, labels_from_distance(result.distance, peak, fill)))
        report["samcell_rt"][precision] = {
            "export_seconds": export_seconds, "verified_max_abs_error_vs_torch": export.max_abs_error,
            "distance_max_abs_diff": max(diffs), "distance_max_abs_diff_all_pixels": max(diffs_all),
            "label_mean_matched_iou": float(np.mean(ious)), "seconds_per_image": float(np.mean(seconds)),
            "seconds_per_tile_engine": float(np.mean(engine)) / tiles,
            "speedup_vs_reference": report["reference"]["seconds_per_image"] / float(np.mean(seconds)),
        }
        click.echo(json.dumps({precision: report["samcell_rt"][precision]}), err=True)
    emit_report(report, out)


if __name__ == "__main__":
    main()
