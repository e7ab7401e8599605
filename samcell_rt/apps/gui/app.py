"""The local web app: a Starlette API plus one static page, served on 127.0.0.1 by uvicorn."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...runs import plots
from ...runs.timeline import series_fit, stack_series
from ...runs.writers import cells_csv, geojson, label_image, labels_tiff_bytes, overlay_layer, png_bytes, rois_zip
from ...runtime.io import MAX_PIXELS
from ...runtime.measure import json_columns, with_physical_units
from ...runtime.segmenter import Segmenter
from ..http import RequestError, guarded, plot_png, query_int, read_form
from .jobs import Job, JobQueue

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 512
OVERLAY_MODES = ("outline", "fill")


def create_app(segmenter: Segmenter, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_pixels: int = MAX_PIXELS) -> Starlette:
    """Build the app around one loaded model; the job queue lives as long as the app."""
    jobs = JobQueue(segmenter, max_pixels)
    limit = int(max_upload_mb * 1024 * 1024)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        model = segmenter.info
        return JSONResponse({"model": model.name, "version": model.version, "engine": segmenter.engine_name,
                             "peak": segmenter.peak, "fill": segmenter.fill, "max_upload_mb": max_upload_mb})

    @guarded
    async def upload(request: Request) -> Response:
        form = await read_form(request, limit, max_files=1000)
        accepted, rejected = [], []
        for upload_file in form.getlist("files"):
            data = await upload_file.read()
            try:
                accepted.append(jobs.add(upload_file.filename or "image", data).summary())
            except ValueError as exc:
                rejected.append(str(exc))
        if not accepted and rejected:
            raise RequestError(415, "; ".join(rejected))
        return JSONResponse({"accepted": accepted, "rejected": rejected})

    async def list_jobs(request: Request) -> Response:
        return JSONResponse([job.summary() for job in jobs.all()])

    def with_job(handler, needs_done: bool = True):
        @guarded
        async def wrapped(request: Request) -> Response:
            try:
                job = jobs.get(int(request.path_params["job_id"]))
            except KeyError:
                raise RequestError(404, "no such image") from None
            if needs_done and job.status != "done":
                raise RequestError(409, f"image is {job.status}")
            try:
                frame = query_int(request, "frame", 0)
                if job.status == "done":
                    jobs.outcome(job).frame(frame)  # out of range: 400, also where every frame is exported
                return await handler(request, job, frame)
            except IndexError as exc:
                raise RequestError(400, str(exc)) from exc
        return wrapped

    async def detail(request: Request, job: Job, frame: int) -> Response:
        body = job.summary()
        if job.status == "done":
            _, result = jobs.outcome(job).frame(frame)
            metrics = {**result.metrics, "diameter_px": result.diameter, "scale": result.scale}
            body.update(metrics=metrics, shape=list(result.labels.shape), pixel_size_um=job.pixel_size_um,
                        peak=job.thresholds[0], fill=job.thresholds[1],
                        cells=json_columns(with_physical_units(result.cells, job.pixel_size_um)))
        return JSONResponse(body)

    async def remove(request: Request, job: Job, frame: int) -> Response:
        jobs.remove(job.id)
        return JSONResponse({"removed": job.id})

    async def image_png(request: Request, job: Job, frame: int) -> Response:
        _, result = jobs.outcome(job).frame(frame)
        return _png(np.repeat(result.image_u8[..., None], 3, axis=2))

    async def overlay_png(request: Request, job: Job, frame: int) -> Response:
        mode = request.query_params.get("mode", "outline")
        if mode not in OVERLAY_MODES:
            raise RequestError(400, f"mode={mode!r}: choose one of {', '.join(OVERLAY_MODES)}")
        _, result = jobs.outcome(job).frame(frame)
        return _png(overlay_layer(result.labels, mode))

    async def thresholds(request: Request, job: Job, frame: int) -> Response:
        peak, fill = _thresholds(await _json(request))
        jobs.rethreshold(job, peak, fill)
        return await detail(request, job, frame)

    async def download_cells(request: Request, job: Job, frame: int) -> Response:
        _, result = jobs.outcome(job).frame(frame)
        text = cells_csv([result], job.pixel_size_um)
        return Response(text, media_type="text/csv", headers=_attachment(job, "_cells.csv"))

    async def rois(request: Request, job: Job, frame: int) -> Response:
        data = rois_zip(jobs.outcome(job).results)
        return Response(data, media_type="application/zip", headers=_attachment(job, "_rois.zip"))

    async def detections(request: Request, job: Job, frame: int) -> Response:
        body = json.dumps(geojson(jobs.outcome(job).results, job.pixel_size_um))
        return Response(body, media_type="application/geo+json", headers=_attachment(job, ".geojson"))

    async def labels_tif(request: Request, job: Job, frame: int) -> Response:
        data = labels_tiff_bytes(label_image(jobs.outcome(job).results), job.pixel_size_um)
        return Response(data, media_type="image/tiff", headers=_attachment(job, "_labels.tif"))

    async def timeline_png(request: Request, job: Job, frame: int) -> Response:
        outcome = jobs.outcome(job)
        if len(outcome.results) < 2:
            raise RequestError(400, "a timeline needs a stack of two or more frames")
        series = stack_series(Path(job.name).stem, outcome.stack, [r.metrics for r in outcome.results])
        return _plot(lambda: plots.timeline_png(series, series_fit(series)))

    async def summary_png(request: Request) -> Response:
        done = [job for job in jobs.all() if job.status == "done" and job.metrics]
        if not done:
            raise RequestError(409, "no processed images yet")
        return _plot(lambda: plots.per_image_png([job.name for job in done], [job.metrics["cells"] for job in done],
                                                 [job.metrics["confluency"] for job in done]))

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images", list_jobs),
        Route("/api/images/{job_id:int}", with_job(detail, needs_done=False)),
        Route("/api/images/{job_id:int}", with_job(remove, needs_done=False), methods=["DELETE"]),
        Route("/api/images/{job_id:int}/image.png", with_job(image_png)),
        Route("/api/images/{job_id:int}/overlay.png", with_job(overlay_png)),
        Route("/api/images/{job_id:int}/thresholds", with_job(thresholds), methods=["POST"]),
        Route("/api/images/{job_id:int}/cells.csv", with_job(download_cells)),
        Route("/api/images/{job_id:int}/labels.tif", with_job(labels_tif)),
        Route("/api/images/{job_id:int}/rois.zip", with_job(rois)),
        Route("/api/images/{job_id:int}/cells.geojson", with_job(detections)),
        Route("/api/images/{job_id:int}/timeline.png", with_job(timeline_png)),
        Route("/api/summary.png", guarded(summary_png)),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = jobs
    return app


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


def _attachment(job: Job, suffix: str) -> dict[str, str]:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(job.name).stem)
    return {"Content-Disposition": f'attachment; filename="{stem}{suffix}"'}


def _plot(draw) -> Response:
    return Response(plot_png(draw), media_type="image/png", headers={"Cache-Control": "no-store"})


def _png(pixels: np.ndarray) -> Response:
    return Response(png_bytes(pixels), media_type="image/png", headers={"Cache-Control": "no-store"})

