"""`serve`, `gui` and `web`: the HTTP service, the local GUI and the in-browser page."""

from __future__ import annotations

from pathlib import Path

import click

from .. import load_model
from ..apps.http import GUI, SERVICE
from ..runtime.engines import AUTO
from .options import diameter_option, engine_option, max_pixels_option, model_option, requires_extra, server_options


@click.command()
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

    from ..apps.serve import create_service

    segmenter = load_model(model, engine, batch_size=batch_size, diameter=diameter)
    click.echo(f"samcell-rt service on http://{host}:{port}/ (model {segmenter.info.name}, engine "
               f"{segmenter.engine_name}); POST images to /v1/segment?name=FILE.tif", err=True)
    uvicorn.run(create_service(segmenter, max_mb, max_pixels, data_root), host=host, port=port, log_level="warning")


@click.command()
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

    from ..apps.gui.app import create_app

    segmenter = load_model(model, engine, diameter=diameter)
    url = f"http://{host}:{port}/"
    click.echo(f"samcell-rt GUI on {url} (model {segmenter.info.name}, engine {segmenter.engine_name}); Ctrl+C to stop",
               err=True)
    if not no_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(segmenter, max_upload_mb, max_pixels), host=host, port=port, log_level="warning")


@click.command()
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
    from ..apps.web import build_site, serve_site

    record = build_site(folder, model, runtime_tarball)
    click.echo(f"wrote {folder} (model {record['model_name']} v{record['model_version']}, {record['runtime']})", err=True)
    if serve_it:
        click.echo(f"serving {folder} on http://{host}:{port}/ (cross-origin isolated); Ctrl+C to stop", err=True)
        serve_site(folder, host, port)
