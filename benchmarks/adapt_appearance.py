"""Adaptation to appearances the default model reads badly: 2 annotated images in, the rest scored.

Sets (permitted data only): `pkg:bbbc007` as is, and the membrane and DIC renderings
(`train.render.rendered_copy`, the same image for every model) of BBBC007 and of the held-out E. coli
colony frames (`pkg:bacteria-heldout`, never trained on by the default model). Per set, 2 images are
drawn with a fixed seed; the others are scored.

Each row is one adaptation within a wall-clock budget for the whole job, made one of two ways
(`--how`): `adapt` (default) runs the command as a user does, through its Python entry point: the 2
images written as a folder of pairs, the recipe cross-validated against the starting model with
re-chosen thresholds (the guard rail), export with verification and registration; the row keeps
which recipe shipped and why, the optimiser steps and crops of each training and the
cross-validated scores. `finetune` measures a recipe alone: `train.finetune` gets the budget less
loading and `RESERVE_SECONDS`, thresholds are chosen on the 2 training images' runtime maps. Then
the default model (its own thresholds) and the adapted model segment the scored images through the
runtime (`load_model`, onnxruntime CPU, `--diameter auto` as `segment` does) and are scored against
their labels (SEG, DET, OP_CSB pooled over cells). The load average before and after and the commit
are kept with each row: on a shared machine a budget buys less compute.

    nice -n 5 python benchmarks/adapt_appearance.py --sets bbbc007~membrane --recipes full \
        --minutes 10 --score-limit 4 --out benchmarks/results/adapt_appearance_cpu.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapt import score  # noqa: E402  (the runtime's scores of a model on samples)

SETS = ("bbbc007", "bbbc007~membrane", "bbbc007~dic", "heldout~membrane", "heldout~dic")
RESERVE_SECONDS = 120.0  # thresholds on 2 images and export with verification, measured 60-100 s at load 6-10


def load_set(name: str) -> list:
    """The samples of one set: a packaged source, or its rendered copies (`SOURCE~KIND`)."""
    from samcell_rt.train.render import RENDERED, rendered_copy
    from samcell_rt.train.sources import load_packaged

    source, _, kind = name.partition(RENDERED)
    samples = load_packaged({"heldout": "bacteria-heldout"}.get(source, source))
    return [rendered_copy(s, kind) for s in samples] if kind else samples


def split(samples: list, count: int, seed: int, limit: int) -> tuple[list, list]:
    """`count` training images drawn with `seed`; the others (the first `limit` of them, 0: all) scored."""
    picked = set(np.random.default_rng(seed).choice(len(samples), count, replace=False).tolist())
    others = [s for i, s in enumerate(samples) if i not in picked]
    return [samples[i] for i in sorted(picked)], others[: limit or None]


def finetune_row(train: list, recipe: str, minutes: float, work: Path, seed: int) -> dict:
    """One recipe alone within `minutes` of wall time (no cross-validation, no guard rail): the model
    file, its thresholds and what the time bought."""
    from safetensors.torch import save_file

    from samcell_rt.evaluate import FILLS, PEAKS, sweep_maps
    from samcell_rt.export.model import SamCellTiles
    from samcell_rt.export.onnx import ModelProps, export_model
    from samcell_rt.registry import DEFAULT_MODEL
    from samcell_rt.train.adapt_job import starting_model
    from samcell_rt.train.data import Augment, cell_diameters
    from samcell_rt.train.finetune import FinetuneSettings, finetune

    start = time.monotonic()
    loaded = starting_model(DEFAULT_MODEL)
    wrapper = SamCellTiles(loaded.model, 256).eval()
    seconds = minutes * 60 - RESERVE_SECONDS - (time.monotonic() - start)
    report = finetune(wrapper, train, seconds, FinetuneSettings(recipe=recipe, seed=seed), loaded.sha256)
    trained = time.monotonic() - start
    weights, model = work / f"{recipe}-{minutes:g}.safetensors", work / f"{recipe}-{minutes:g}.onnx"
    save_file({k: v.detach().clone().contiguous() for k, v in wrapper.sam.state_dict().items()}, str(weights))
    sizes = cell_diameters(train, Augment())
    weights.with_suffix(".json").write_text(json.dumps({"sam_config": wrapper.sam.config.to_dict(),
                                                         "data": {"cell_diameter_px": sizes}}, default=str))
    diameter = (sizes["typical"], tuple(sizes["range"])) if sizes else None
    export_model(weights, model, ModelProps(name=model.stem, tile=256, diameter=diameter))
    from samcell_rt import load_model

    segmenter = load_model(str(model), "cpu")
    triples = [(s.name, r.distance, s.labels) for s, r in zip(train, segmenter.segment_many(s.image for s in train))]
    best = max(sweep_maps(triples, PEAKS, FILLS), key=lambda row: row["OP_CSB"])
    return {"model": model, "recipe": recipe, "minutes": minutes, "command_seconds": round(time.monotonic() - start, 1),
            "training_seconds": round(trained, 1), **report.as_dict(), "peak": best["peak"], "fill": best["fill"]}


def adapt_row(train: list, recipe: str, minutes: float, work: Path, seed: int) -> dict:
    """One `samcell-rt adapt` run as a user makes it (the pairs written to a folder, cross-validation,
    the guard rail, export with verification, registration), through its Python entry point."""
    from samcell_rt.runs.training_pairs import write_training_pair
    from samcell_rt.train.adapt import AdaptRequest, AdaptSettings, adapt

    pairs = work / "pairs"
    for sample in train:
        write_training_pair(pairs, Path(sample.name).stem, sample.image, sample.labels)
    start = time.monotonic()
    result = adapt(AdaptRequest([str(pairs)], work / f"adapt-{recipe}.onnx", minutes=minutes, name=work.name,
                                overwrite=True), AdaptSettings(recipe=recipe, seed=seed), progress=False)
    training = result.training
    return {"model": result.out, "recipe": recipe, "shipped": training["recipe"], "why": training["why"],
            "minutes": minutes, "command_seconds": round(time.monotonic() - start, 1), "trainings": training["steps"],
            "scored_on": result.verdict.scored_on, "cv_before": result.before.as_dict(),
            "cv_after": result.after.as_dict(), "peak": result.verdict.peak, "fill": result.verdict.fill}


ROWS = {"adapt": adapt_row, "finetune": finetune_row}


@click.command()
@click.option("--sets", default=",".join(SETS), show_default=True)
@click.option("--recipes", default="late", show_default=True)
@click.option("--minutes", default="10", show_default=True)
@click.option("--train-images", default=2, show_default=True)
@click.option("--score-limit", default=0, show_default=True, help="Score only the first N other images (0: all).")
@click.option("--seed", default=0, show_default=True)
@click.option("--how", type=click.Choice(sorted(ROWS)), default="adapt", show_default=True,
              help="adapt: the command as a user runs it; finetune: the recipe alone, all the time spent training.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/adapt-appearance"), show_default=True)
@click.option("--label", default="", help="suffix of the row's key, to keep a variant beside the rows before it")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(sets, recipes, minutes, train_images, score_limit, seed, how, work, label, out) -> None:
    from samcell_rt.machine import machine_info
    from samcell_rt.registry import resolve_model

    os.environ.setdefault("SAMCELL_RT_HOME", str(work / "home"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for name in sets.split(","):
        train, others = split(load_set(name), train_images, seed, score_limit)
        report = json.loads(out.read_text()) if out.exists() else {}
        report.setdefault("appearance_machine", machine_info())
        entry = report.setdefault("appearance", {}).setdefault(name, {})
        if entry.get("scored_images", [s.name for s in others]) != [s.name for s in others]:
            raise click.UsageError(f"{out} scored other images of {name}: its default row would not compare; "
                                   "write to another --out")
        entry.update({"train_images": [s.name for s in train], "scored_images": [s.name for s in others],
                      "scored_cells": int(sum(len(np.unique(s.labels)) - 1 for s in others))})
        if "default" not in entry:
            entry["default"] = {"load_before": os.getloadavg(), **score(resolve_model(None), others)}
            out.write_text(json.dumps(report, indent=2, default=str))
        for recipe in recipes.split(","):
            for budget in map(float, minutes.split(",")):
                folder = Path(tempfile.mkdtemp(prefix=f"{name.replace('~', '-')}-", dir=work))
                load = os.getloadavg()
                row = ROWS[how](train, recipe, budget, folder, seed)
                model = row.pop("model")
                row = {"commit": commit, "load_before": load, "load_after": os.getloadavg(), **row,
                       "adapted": score(model, others, peak=row["peak"], fill=row["fill"])}
                row["gain_OP_CSB"] = round(row["adapted"]["OP_CSB"] - entry["default"]["OP_CSB"], 4)
                report = json.loads(out.read_text())
                report["appearance"][name].setdefault("rows", {})[f"{how}-{recipe}-{budget:g}min{label and '-' + label}"] = row
                out.write_text(json.dumps(report, indent=2, default=str))
                click.echo(json.dumps({"set": name, **{k: v for k, v in row.items() if k != "adapted"},
                                       "OP_CSB": row["adapted"]["OP_CSB"], "default": entry["default"]["OP_CSB"]}))


if __name__ == "__main__":
    main()
