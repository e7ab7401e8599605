"""`export` and `build-engine`: checkpoints to verified ONNX models, ONNX models to TensorRT engines."""

from __future__ import annotations

from pathlib import Path

import click

from ..export import CONFIG_NAMES, TOLERANCE
from ..runtime import DEFAULT_FILL, DEFAULT_PEAK
from ..runtime.engines.table import Precision
from ..runtime.engines.trt_header import RUNTIMES
from .options import requires_extra

# what build-engine builds, its default first (click's Choice takes the plain values)
BUILD_PRECISIONS = [p.value for p in (Precision.FP16, Precision.FP32, Precision.INT8)]


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option("--precision", type=click.Choice(list(TOLERANCE)), default=Precision.FP32.value, show_default=True,
              help="Weights and arithmetic of the graph; fp16 keeps LayerNorm/Softmax/sigmoid in fp32, int8 "
                   "quantises matrix products only.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset to export with.")
@click.option("--name", default=None, help="Model name stored in the metadata (default: checkpoint stem).")
@click.option("--version", "model_version", default="1", show_default=True, help="Model version stored in the metadata.")
@click.option("--config", type=click.Choice(CONFIG_NAMES), default=None,
              help="SAM configuration when the checkpoint carries none (default vit-b).")
@click.option("--peak", type=click.FloatRange(0, 1), default=DEFAULT_PEAK, show_default=True,
              help="Peak threshold stored in the model (choose it with `samcell-rt evaluate --sweep`).")
@click.option("--fill", type=click.FloatRange(0, 1), default=DEFAULT_FILL, show_default=True,
              help="Fill threshold stored in the model.")
@click.option("--cell-diameter", nargs=3, type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="TYPICAL LOW HIGH",
              help="Cell diameters (px) the model was trained on, for --diameter rescaling [default: the trainer's "
                   "record beside the checkpoint; none for other checkpoints].")
def export_command(checkpoint, out, precision, opset, name, model_version, config, peak, fill, cell_diameter) -> None:
    """Export a SAMCell/SAM CHECKPOINT to a verified ONNX model (needs the `export` extra).

    \b
    Example:
      samcell-rt export samcell-generalist.pt --out generalist.onnx --precision fp16
    """
    requires_extra("export", "torch", "transformers", "onnxslim")
    from ..export.model import config_by_name
    from ..export.onnx import ModelProps, export_model

    diameter = (cell_diameter[0], (cell_diameter[1], cell_diameter[2])) if cell_diameter else None
    props = ModelProps(name=name, version=model_version, peak=peak, fill=fill, diameter=diameter)
    report = export_model(checkpoint, out, props, precision=Precision(precision), opset=opset,
                          config=config_by_name(config) if config else None)
    click.echo(f"wrote {report.path} ({precision}); max abs error vs torch {report.max_abs_error:.3g} "
               f"on {report.tiles_checked} tiles (tolerance {report.tolerance})")


@click.command("build-engine")
@click.argument("model")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default=None,
              help="TensorRT-RTX (builds anywhere, for RTX GPUs) or the full TensorRT (on the target GPU) "
                   "[default: the installed one].")
@click.option("--precision", type=click.Choice(BUILD_PRECISIONS), default=BUILD_PRECISIONS[0], show_default=True,
              help="Engine precision (fp16 is checked against the fp32 model; int8: full TensorRT only, with --calib).")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(min=1), help="Largest batch the engine takes.")
@click.option("--opt-batch", default=8, show_default=True, type=click.IntRange(min=1), help="Batch the engine is tuned for.")
@click.option("--compute-capability", "compute_capabilities", multiple=True, metavar="X.Y",
              help="TensorRT-RTX target, repeatable (e.g. 8.9) [default: every one it supports].")
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="The model's checkpoint: derive the fp16 graph from it instead of converting the fp32 graph.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Engine file (default: the user engine cache, where --engine auto finds it).")
@click.option("--workspace", default=8.0, show_default=True, type=click.FloatRange(min=0.25),
              help="Builder memory, GiB (full TensorRT).")
@click.option("--calib", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Images for int8 calibration (full TensorRT).")
def build_engine_command(model, runtime, precision, max_batch, opt_batch, compute_capabilities, checkpoint, out,
                         workspace, calib) -> None:
    """Build a TensorRT / TensorRT-RTX engine from MODEL (ONNX file or model name, e.g. samcell-lite).

    \b
    Example:
      samcell-rt build-engine samcell-lite --runtime rtx --precision fp16 --out lite16.engine
    """
    from ..export.tensorrt import BuildSettings, build_engine, describe_build
    from ..registry import resolve_model

    settings = BuildSettings(precision=Precision(precision), max_batch=max_batch, opt_batch=opt_batch, runtime=runtime,
                             compute_capabilities=compute_capabilities, checkpoint=checkpoint, workspace_gb=workspace,
                             calib_dir=calib)
    report = build_engine(resolve_model(model), out, settings, log=lambda line: click.echo(line, err=True))
    click.echo(describe_build(report))
