"""`--diameter auto` against an explicit diameter when the cells are far from the model's size.

BBBC007 nuclei (about 18 px, `pkg:bbbc007`; the default model never trained on them) are resized
by each `--factor` (4: about 72 px, 1/3: about 6 px) with their labels, then segmented three ways:
`auto`, the true median diameter given explicitly (`explicit`), and `off` (one pass at the image's
own size, the time `auto` is held to on images that need no resize). Scores are pooled CTC OP_CSB;
times are whole `Segmenter.segment` calls, summed over the images, all modes in one run.

    python benchmarks/diameter_auto.py --out benchmarks/results/diameter_auto_cpu.json
    python benchmarks/diameter_auto.py --source bacteria-heldout --factor 1 --out ...

The second run is the time check on images that need no resize: the held-out E. coli colonies
(about 38 px, near the default model's 33 px), where `auto` should cost one pass.
"""

from __future__ import annotations

import time

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info

MODES = ("auto", "explicit", "off")


def resized_pair(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels resized by `factor` (area averaging to shrink, bilinear to enlarge; labels nearest)."""
    import cv2

    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    smooth = cv2.INTER_LINEAR if factor > 1 else cv2.INTER_AREA
    return (cv2.resize(image, size, interpolation=smooth),
            cv2.resize(labels.astype(np.float32), size, interpolation=cv2.INTER_NEAREST).astype(np.int32))


def true_diameter(labels: np.ndarray) -> float:
    from samcell_rt.runtime.scale import equivalent_diameters

    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(equivalent_diameters(areas[areas > 0])))


def run_mode(model: str, pairs: list, mode: str) -> dict:
    from samcell_rt.evaluate import pooled, score_pair
    from samcell_rt.runtime.segmenter import Segmenter

    shared = None if mode == "explicit" else Segmenter(model, engine="cpu", diameter=mode)
    scores, seconds, found = [], 0.0, []
    for image, labels in pairs:
        true = true_diameter(labels)
        segmenter = shared or Segmenter(model, engine="cpu", diameter=true)  # explicit: each image its own size
        start = time.perf_counter()
        result = segmenter.segment(image)
        seconds += time.perf_counter() - start
        scores.append(score_pair(labels, result.labels))
        found.append({"true_px": round(true, 1), "estimate_px": round(result.diameter or 0, 1),
                      "scale": round(result.scale, 3)})
    return {**pooled(scores), "seconds": seconds, "images": found}


@click.command()
@click.option("--model", default="samcell-lite", show_default=True, help="Model name or ONNX file.")
@click.option("--factor", "factors", multiple=True, type=float, default=(1.0, 4.0, 1 / 3), show_default=True)
@click.option("--source", default="bbbc007", show_default=True, help="Packaged annotated source to resize and score.")
@click.option("--every", default=1, show_default=True, help="Use every Nth image (1: all).")
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(model, factors, source, every, out) -> None:
    from samcell_rt.registry import resolve_model
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.train.sources import load_packaged

    path = str(resolve_model(model))
    samples = load_packaged(source)[::every]
    Segmenter(path, engine="cpu").segment(samples[0].image)  # compile-on-first-use costs stay out of the first mode
    report = {"machine": machine_info(), "model": model, "source": source, "images": [s.name for s in samples], "factors": {}}
    for factor in factors:
        pairs = [resized_pair(s.image, s.labels, factor) for s in samples]
        rows = {mode: run_mode(path, pairs, mode) for mode in MODES}
        rows["auto_minus_explicit_op_csb"] = rows["auto"]["OP_CSB"] - rows["explicit"]["OP_CSB"]
        rows["auto_over_off_seconds"] = rows["auto"]["seconds"] / rows["off"]["seconds"]
        report["factors"][f"{factor:.3g}"] = rows
        click.echo(f"x{factor:.3g}: OP_CSB auto {rows['auto']['OP_CSB']:.3f} explicit {rows['explicit']['OP_CSB']:.3f} "
                   f"off {rows['off']['OP_CSB']:.3f}; time auto/off {rows['auto_over_off_seconds']:.2f}", err=True)
    emit_report(report, out)


if __name__ == "__main__":
    main()
