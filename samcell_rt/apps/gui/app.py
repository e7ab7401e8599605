"""The local web app: a Starlette API plus one static page, served on 127.0.0.1 by uvicorn."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...errors import ImageReadError
from ...reports import plots
from ...reports.timeline import series_fit, stack_series
from ...runs.image_files import overlay_layer, png_bytes
from ...runs.outputs import KINDS, OUTPUTS
from ...runtime.io import MAX_PIXELS
from ...runtime.measure import json_columns, with_physical_units
from ...runtime.segmenter import Result, Segmenter
from ..http import GUI, RequestError, guarded, plot_png, query_int, read_form
from .jobs import Job, JobQueue

STATIC = Path(__file__).parent / "static"
OVERLAY_MODES = ("outline", "fill")


def create_app(segmenter: Segmenter, max_upload_mb: float = GUI.max_mb,
               max_pixels: int = MAX_PIXELS) -> Starlette:
    """Build the app around one loaded model; the job queue lives as long as the app (app.state)."""
    jobs = JobQueue(segmenter, max_pixels, max_bytes=int(max_upload_mb * 2**20))  # decoded, as the service counts

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        jobs.close()

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.jobs, app.state.segmenter, app.state.max_upload_mb = jobs, segmenter, max_upload_mb
    return app


def _jobs(request: Request) -> JobQueue:
    return request.app.state.jobs


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def info(request: Request) -> Response:
    segmenter = request.app.state.segmenter
    model = segmenter.info
    return JSONResponse({"model": model.name, "version": model.version, "engine": segmenter.engine_name,
                         "precision": segmenter.engine_precision, "peak": segmenter.peak, "fill": segmenter.fill,
                         "max_upload_mb": request.app.state.max_upload_mb})


@guarded
async def upload(request: Request) -> Response:
    form = await read_form(request, int(request.app.state.max_upload_mb * 2**20), max_files=1000)
    accepted, rejected = [], []
    for upload_file in form.getlist("files"):
        data = await upload_file.read()
        try:
            accepted.append(_jobs(request).add(upload_file.filename or "image", data).summary())
        except ImageReadError as exc:
            rejected.append(str(exc))
    if not accepted and rejected:
        raise RequestError(415, "; ".join(rejected))
    return JSONResponse({"accepted": accepted, "rejected": rejected})


async def list_jobs(request: Request) -> Response:
    return JSONResponse([job.summary() for job in _jobs(request).all()])


def job_route(needs_done: bool = True):
    """Decorate `handler(request, job)`: the job from the path (404 if unknown), done unless told otherwise (409)."""
    def decorate(handler):
        @guarded
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            try:
                job = _jobs(request).get(int(request.path_params["job_id"]))
            except KeyError:
                raise RequestError(404, "no such image") from None
            if needs_done and job.status != "done":
                raise RequestError(409, f"image is {job.status}")
            return await handler(request, job)
        return wrapped
    return decorate


def _frame(request: Request, job: Job) -> Result:
    """The result of the frame the query names (?frame=N, default 0); 400 for one that does not exist."""
    try:
        return _jobs(request).outcome(job).frame(query_int(request, "frame", 0))[1]
    except IndexError as exc:
        raise RequestError(400, str(exc)) from exc


@job_route(needs_done=False)
async def detail(request: Request, job: Job) -> Response:
    body = job.summary()
    if job.status == "done":
        result = _frame(request, job)
        metrics = {**result.metrics, "diameter_px": result.diameter, "scale": result.scale}
        body.update(metrics=metrics, shape=list(result.labels.shape), pixel_size_um=job.pixel_size_um,
                    peak=job.thresholds[0], fill=job.thresholds[1],
                    cells=json_columns(with_physical_units(result.cells, job.pixel_size_um)))
    return JSONResponse(body)


@job_route(needs_done=False)
async def remove(request: Request, job: Job) -> Response:
    _jobs(request).remove(job.id)
    return JSONResponse({"removed": job.id})


@job_route()
async def image_png(request: Request, job: Job) -> Response:
    return _png(np.repeat(_frame(request, job).image_u8[..., None], 3, axis=2))


@job_route()
async def overlay_png(request: Request, job: Job) -> Response:
    mode = request.query_params.get("mode", "outline")
    if mode not in OVERLAY_MODES:
        raise RequestError(400, f"mode={mode!r}: choose one of {', '.join(OVERLAY_MODES)}")
    return _png(overlay_layer(_frame(request, job).labels, mode))


@job_route()
async def thresholds(request: Request, job: Job) -> Response:
    peak, fill = _thresholds(await _json(request))
    _jobs(request).rethreshold(job, peak, fill)
    return await detail(request)


@job_route()
async def download(request: Request, job: Job) -> Response:
    """One output of the table in runs.outputs (`/download/<kind>`): of the frame given by ?frame=N, else of all frames."""
    kind = KINDS.get(request.path_params["kind"])
    if kind is None or kind.render is None:
        offered = ", ".join(k.name for k in OUTPUTS if k.render)
        raise RequestError(404, f"no download {request.path_params['kind']!r}; offered: {offered}")
    results = [_frame(request, job)] if "frame" in request.query_params else _jobs(request).outcome(job).results
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(job.name).stem)
    return Response(kind.render(results, job.pixel_size_um), media_type=kind.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{stem}{kind.suffix}"'})


@job_route()
async def timeline_png(request: Request, job: Job) -> Response:
    outcome = _jobs(request).outcome(job)
    if len(outcome.results) < 2:
        raise RequestError(400, "a timeline needs a stack of two or more frames")
    series = stack_series(Path(job.name).stem, outcome.stack, [r.metrics for r in outcome.results])
    return _plot(lambda: plots.timeline_png(series, series_fit(series)))


@guarded
async def summary_png(request: Request) -> Response:
    done = [job for job in _jobs(request).all() if job.status == "done" and job.metrics]
    if not done:
        raise RequestError(409, "no processed images yet")
    return _plot(lambda: plots.per_image_png([job.name for job in done], [job.metrics["cells"] for job in done],
                                             [job.metrics["confluency"] for job in done]))


ROUTES = [
    Route("/", index),
    Route("/api/info", info),
    Route("/api/images", upload, methods=["POST"]),
    Route("/api/images", list_jobs),
    Route("/api/images/{job_id:int}", detail),
    Route("/api/images/{job_id:int}", remove, methods=["DELETE"]),
    Route("/api/images/{job_id:int}/image.png", image_png),
    Route("/api/images/{job_id:int}/overlay.png", overlay_png),
    Route("/api/images/{job_id:int}/thresholds", thresholds, methods=["POST"]),
    Route("/api/images/{job_id:int}/download/{kind}", download),
    Route("/api/images/{job_id:int}/timeline.png", timeline_png),
    Route("/api/summary.png", summary_png),
    Mount("/static", StaticFiles(directory=STATIC)),
]


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise RequestError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object")
    return body


def _thresholds(body: dict) -> tuple[float, float]:
    """(peak, fill) from a request body; RequestError 400 naming what is missing or wrong."""
    missing = [name for name in ("peak", "fill") if name not in body]
    if missing:
        raise RequestError(400, f"missing {' and '.join(missing)}: send {{\"peak\": 0.47, \"fill\": 0.09}}")
    try:
        peak, fill = float(body["peak"]), float(body["fill"])
    except (TypeError, ValueError):
        raise RequestError(400, "peak and fill must be numbers") from None
    if not (0 <= peak <= 1 and 0 <= fill <= 1):
        raise RequestError(400, "thresholds must lie in [0, 1]")
    return peak, fill


def _plot(draw) -> Response:
    return Response(plot_png(draw), media_type="image/png", headers={"Cache-Control": "no-store"})


def _png(pixels: np.ndarray) -> Response:
    return Response(png_bytes(pixels), media_type="image/png", headers={"Cache-Control": "no-store"})

