"""`samcell-rt adapt` from 2 annotated images: quality on the other images of the source, against time budget.

For each budget the real command runs as a user runs it (`samcell-rt adapt PAIRS --out M.onnx
--minutes N`, a subprocess, wall time measured), then the default model and each adapted model
segment every OTHER image of the source through the runtime (`Segmenter`, onnxruntime CPU,
`--diameter auto` as `segment` does) and are scored against its labels (CTC SEG, DET, OP_CSB pooled
over cells, `samcell_rt.evaluate`). The 2 training images are drawn with a fixed seed. The load
average is recorded before and after each run: on a shared machine a budget buys less compute.

Sources: `pkg:bbbc007` (never trained on by the default model, not reserved) and `membrane`, a
rendering of permitted masks (BBBC007's labels) with a new appearance: bright cell borders, dark
interiors, dim background, blur and noise.

    python benchmarks/adapt.py --source pkg:bbbc007 --minutes 2,5,10,20 \
        --init /work/scratch/samcell-lite-v4.safetensors --out benchmarks/results/adapt_cpu.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import machine_info


def load_source(source: str) -> list:
    """Samples of a packaged source, or `membrane`: BBBC007's masks rendered as a membrane stain."""
    from samcell_rt.train.data import load_dataset

    if source != "membrane":
        return load_dataset([source])
    return [render_membrane(s, seed) for seed, s in enumerate(load_dataset(["pkg:bbbc007"]))]


def render_membrane(sample, seed: int):
    """Bright 2-px cell borders, dark interiors, dim background, blur, shot noise (uint8)."""
    import cv2
    from scipy import ndimage

    from samcell_rt.train.annotations import Sample

    rng = np.random.default_rng(seed)
    labels = sample.labels
    border = (ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)) & (
        ndimage.binary_dilation(labels > 0, iterations=1))
    image = np.where(labels > 0, 40.0, 25.0) + 170.0 * border
    image = cv2.GaussianBlur(image, (0, 0), 1.2)
    image = rng.poisson(np.clip(image, 0, None)).astype(np.float64)
    return Sample(f"membrane/{Path(sample.name).name}", np.clip(image, 0, 255).astype(np.uint8), labels, "membrane")


def write_pairs(samples: list, folder: Path) -> None:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(samples):
        tifffile.imwrite(folder / f"train{i}.tif", sample.image)
        tifffile.imwrite(folder / f"train{i}_labels.tif", sample.labels.astype(np.uint16))


def score(model: Path, samples: list, **options) -> dict:
    """Runtime scores of `model` on `samples`; `options` go to the Segmenter (e.g. peak, fill)."""
    from samcell_rt import load_model
    from samcell_rt.evaluate import pooled, score_pair

    segmenter = load_model(str(model), "cpu", **options)
    start = time.perf_counter()
    scores = [score_pair(s.labels, r.labels, s.name) for s, r in zip(samples, segmenter.segment_many(s.image for s in samples))]
    summary = pooled(scores)
    return {**{k: round(float(summary[k]), 4) for k in ("SEG", "DET", "OP_CSB", "AP50")}, "cells": summary["n_ref"],
            "found": summary["n_pred"], "seconds": round(time.perf_counter() - start, 1),
            "peak": segmenter.peak, "fill": segmenter.fill}


@click.command()
@click.option("--source", default="pkg:bbbc007", show_default=True)
@click.option("--minutes", default="2,5,10,20", show_default=True)
@click.option("--init", default=None, help="Starting checkpoint for adapt --init (until the model ships one).")
@click.option("--train-images", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/adapt-bench"), show_default=True)
@click.option("--label", default="", help="Suffix of the result keys (a rerun with newer code keeps the older rows).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(source, minutes, init, train_images, seed, work, out, label) -> None:
    from samcell_rt.registry import resolve_model

    samples = load_source(source)
    picked = sorted(np.random.default_rng(seed).choice(len(samples), train_images, replace=False).tolist())
    train = [samples[i] for i in picked]
    others = [s for i, s in enumerate(samples) if i not in picked]
    tag = source.replace(":", "-")
    pairs = work / tag / "pairs"
    write_pairs(train, pairs)
    report = json.loads(out.read_text()) if out.exists() else {}
    report["machine"] = {**machine_info(), "note": "2-core AMD EPYC Zen 5 (avx512_bf16) shared with ~6 other jobs: "
                         "a budget buys less compute than on an idle machine; see load averages"}
    entry = report.setdefault("sources", {}).setdefault(source, {})
    entry.update({"train_images": [s.name for s in train], "scored_images": len(others),
                  "scored_cells": int(sum(len(np.unique(s.labels)) - 1 for s in others)),
                  "starting_weights": init or "the model's own"})
    if "default" not in entry:
        entry["default"] = {"load_before": os.getloadavg(), **score(resolve_model(None), others)}
        out.write_text(json.dumps(report, indent=2))
    env = dict(os.environ, SAMCELL_RT_HOME=str(work / "home"))
    for budget in [float(m) for m in minutes.split(",")]:
        model = work / tag / f"adapted-{budget:g}min{label}.onnx"
        command = [sys.executable, "-m", "samcell_rt.cli", "adapt", str(pairs), "--out", str(model), "--minutes",
                   str(budget), "--overwrite", "--seed", str(seed), *(["--init", init] if init else [])]
        load = os.getloadavg()
        start = time.perf_counter()
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        row = {"minutes": budget, "commit": commit, "wall_seconds": round(wall, 1), "load_before": load,
               "load_after": os.getloadavg(),
               "exit_code": run.returncode, "table": run.stdout.strip().splitlines()}
        if run.returncode == 0:
            record = json.loads((work / "home" / "adapted.json").read_text())[model.stem]
            row.update({"adapted": score(model, others), "in_command": {k: record[k] for k in
                        ("before", "after", "scored_on", "peak", "fill", "steps", "crops")}})
            row["gain_OP_CSB"] = round(row["adapted"]["OP_CSB"] - entry["default"]["OP_CSB"], 4)
        else:
            row["stderr_tail"] = run.stderr[-2000:]
        entry.setdefault("budgets", {})[f"{budget:g}{label}"] = row
        out.write_text(json.dumps(report, indent=2))
        click.echo(json.dumps({k: v for k, v in row.items() if k != "table"}))


if __name__ == "__main__":
    main()
