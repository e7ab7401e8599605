"""The local web app: a Starlette API plus one static page, served on 127.0.0.1 by uvicorn."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..runtime.io import labels_tiff_bytes
from ..runtime.measure import json_columns, with_physical_units
from ..runtime.segmenter import Segmenter
from ..serve import oversized
from .jobs import Job, JobQueue, frame_of

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_MB = 512


def create_app(segmenter: Segmenter, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> Starlette:
    """Build the app around one loaded model; the job queue lives as long as the app."""
    jobs = JobQueue(segmenter)
    limit = int(max_upload_mb * 1024 * 1024)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        model = segmenter.info
        return JSONResponse({"model": model.name, "version": model.version, "engine": segmenter.engine_name,
                             "peak": segmenter.peak, "fill": segmenter.fill, "max_upload_mb": max_upload_mb})

    async def upload(request: Request) -> Response:
        if await oversized(request, limit):
            return _error(413, f"upload larger than {max_upload_mb:g} MB")
        form = await request.form(max_files=1000)
        accepted, rejected = [], []
        for upload_file in form.getlist("files"):
            data = await upload_file.read()
            try:
                accepted.append(jobs.add(upload_file.filename or "image", data).summary())
            except ValueError as exc:
                rejected.append(str(exc))
        if not accepted and rejected:
            return _error(415, "; ".join(rejected))
        return JSONResponse({"accepted": accepted, "rejected": rejected})

    async def list_jobs(request: Request) -> Response:
        return JSONResponse([job.summary() for job in jobs.all()])

    def with_job(handler):
        async def wrapped(request: Request) -> Response:
            try:
                job = jobs.get(int(request.path_params["job_id"]))
            except KeyError:
                return _error(404, "no such image")
            if handler is not detail and job.status != "done":
                return _error(409, f"image is {job.status}")
            try:
                return await handler(request, job, int(request.query_params.get("frame", 0)))
            except (IndexError, ValueError) as exc:
                return _error(400, f"bad request: {exc}")
        return wrapped

    async def detail(request: Request, job: Job, frame: int) -> Response:
        body = job.summary()
        if job.status == "done":
            image, result = frame_of(job, frame)
            pixel = job.stack.pixel_size_um
            body.update(metrics=result.metrics, shape=list(result.labels.shape), pixel_size_um=pixel,
                        peak=job.thresholds[0], fill=job.thresholds[1],
                        cells=json_columns(with_physical_units(result.cells, pixel)))
        return JSONResponse(body)

    async def image_png(request: Request, job: Job, frame: int) -> Response:
        _, result = frame_of(job, frame)
        return _png(np.repeat(result.image_u8[..., None], 3, axis=2))

    async def overlay_png(request: Request, job: Job, frame: int) -> Response:
        _, result = frame_of(job, frame)
        return _png(_overlay_rgba(result.labels, request.query_params.get("mode", "outline")))

    async def thresholds(request: Request, job: Job, frame: int) -> Response:
        body = await request.json()
        peak, fill = float(body["peak"]), float(body["fill"])
        if not (0 <= peak <= 1 and 0 <= fill <= 1):
            raise ValueError("thresholds must lie in [0, 1]")
        jobs.rethreshold(job, peak, fill)
        return await detail(request, job, frame)

    async def cells_csv(request: Request, job: Job, frame: int) -> Response:
        _, result = frame_of(job, frame)
        table = with_physical_units(result.cells, job.stack.pixel_size_um)
        columns = json_columns(table)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(zip(*columns.values()))
        return Response(buffer.getvalue(), media_type="text/csv", headers=_attachment(job, "_cells.csv"))

    async def labels_tif(request: Request, job: Job, frame: int) -> Response:
        labels = np.stack([r.labels for r in job.results]) if len(job.results) > 1 else job.results[0].labels
        return Response(labels_tiff_bytes(labels), media_type="image/tiff", headers=_attachment(job, "_labels.tif"))

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images", list_jobs),
        Route("/api/images/{job_id:int}", with_job(detail)),
        Route("/api/images/{job_id:int}/image.png", with_job(image_png)),
        Route("/api/images/{job_id:int}/overlay.png", with_job(overlay_png)),
        Route("/api/images/{job_id:int}/thresholds", with_job(thresholds), methods=["POST"]),
        Route("/api/images/{job_id:int}/cells.csv", with_job(cells_csv)),
        Route("/api/images/{job_id:int}/labels.tif", with_job(labels_tif)),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        jobs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = jobs
    return app


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _attachment(job: Job, suffix: str) -> dict[str, str]:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(job.name).stem)
    return {"Content-Disposition": f'attachment; filename="{stem}{suffix}"'}


def _overlay_rgba(labels: np.ndarray, mode: str) -> np.ndarray:
    """Transparent picture with outlines (yellow) or filled cells (one colour per label)."""
    from skimage.segmentation import find_boundaries

    rgba = np.zeros(labels.shape + (4,), np.uint8)
    if mode == "fill":
        rng = np.random.default_rng(0)
        palette = rng.integers(60, 256, (int(labels.max(initial=0)) + 1, 3), dtype=np.uint8)
        rgba[..., :3] = palette[labels]
        rgba[..., 3] = np.where(labels > 0, 160, 0)
    else:
        edges = find_boundaries(labels, mode="inner")
        rgba[edges] = (255, 255, 0, 255)
    return rgba


def _png(pixels: np.ndarray) -> Response:
    import cv2

    channels = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[pixels.shape[2]]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(pixels, channels))
    return Response(encoded.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})
