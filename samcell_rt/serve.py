"""`samcell-rt serve`: an HTTP API for instrument software that is not Python (extra `gui`).

Endpoints:
- GET  /health                 -> {"status": "ok"}
- GET  /v1/model               -> model name, version, thresholds, engine
- POST /v1/segment?name=X.tif  -> body: the image file's bytes (or multipart field `file`).
  `format=json` (default): metrics per frame and the per-cell table; `format=tiff`: the label
  image (uint16/uint32 TIFF, a stack for multi-frame input) with the metrics as JSON in the
  `X-Samcell-Metrics` header.
Errors: 413 too large, 415 not an image type, 422 unreadable image or bad values, 503 shutting down.

The model is loaded once. A batching worker takes every request waiting at that moment and runs
their frames through one `segment_many` call, so concurrent requests share engine batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SamcellError
from .runtime.io import IMAGE_SUFFIXES, labels_tiff_bytes, read_image
from .runtime.measure import json_columns
from .runtime.preprocess import ImageValueError
from .runtime.segmenter import Result, Segmenter

DEFAULT_MAX_MB = 256
DRAIN_LIMIT = 1 << 30  # oversized bodies up to this size are drained before answering 413


class RequestError(Exception):
    """A client error with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Request:
    frames: np.ndarray
    future: Future = field(default_factory=Future)


class BatchingWorker:
    """One thread running the model; concurrent requests are merged into shared batches."""

    def __init__(self, segmenter: Segmenter, max_requests: int = 16) -> None:
        self.segmenter, self.max_requests = segmenter, max_requests
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="samcell-serve", daemon=True)
        self._thread.start()

    def submit(self, frames: np.ndarray) -> Future:
        request = _Request(frames)
        self._queue.put(request)
        return request.future

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < self.max_requests:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._segment(batch)

    def _segment(self, batch: list[_Request]) -> None:
        items = [((r, f), frame) for r, request in enumerate(batch) for f, frame in enumerate(request.frames)]
        results: dict[int, list[Result]] = {r: [] for r in range(len(batch))}
        try:
            for result in self.segmenter.segment_many(items, on_error="report"):
                results[result.key[0]].append(result)
        except Exception as exc:  # an engine failure fails these requests, not the server
            for request in batch:
                request.future.set_exception(exc)
            return
        for r, request in enumerate(batch):
            errors = [res.error for res in results[r] if not res.ok]
            if errors:
                request.future.set_exception(RequestError(422, errors[0]))
            else:
                request.future.set_result(results[r])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


def decode_image(data: bytes, name: str, max_bytes: int) -> np.ndarray:
    """Frames of an uploaded image; RequestError for anything a client got wrong."""
    if len(data) > max_bytes:
        raise RequestError(413, f"image larger than {max_bytes // 2**20} MB")
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise RequestError(415, f"{name!r}: not an accepted image type ({', '.join(IMAGE_SUFFIXES)}); "
                                "pass ?name=FILE.tif")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return read_image(path).frames
        except SamcellError as exc:
            raise RequestError(422, f"{name}: {exc.cause}") from exc


def metrics_body(results: list[Result], include_cells: bool) -> dict:
    frames = [{"frame": i, **r.metrics, **({"cells_table": json_columns(r.cells)} if include_cells else {})}
              for i, r in enumerate(results)]
    return {"frames": frames, "shape": list(results[0].labels.shape)}


def labels_tiff(results: list[Result]) -> bytes:
    return labels_tiff_bytes(np.stack([r.labels for r in results]) if len(results) > 1 else results[0].labels)


def create_service(segmenter: Segmenter, max_mb: float = DEFAULT_MAX_MB):
    """The Starlette app around one loaded model."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    worker = BatchingWorker(segmenter)
    max_bytes = int(max_mb * 2**20)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> Response:
        info = segmenter.info
        return JSONResponse({"name": info.name, "version": info.version, "tile": info.tile, "peak": segmenter.peak,
                             "fill": segmenter.fill, "engine": segmenter.engine_name,
                             "source_sha256": info.source_sha256})

    async def segment(request: Request) -> Response:
        try:
            if await oversized(request, max_bytes):
                raise RequestError(413, f"image larger than {max_mb:g} MB")
            data, name = await _body(request, max_bytes)
            frames = await asyncio.to_thread(decode_image, data, name, max_bytes)
            results = await asyncio.wrap_future(worker.submit(frames))
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except (ImageValueError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        wants = request.query_params.get("format", "json")
        if wants == "tiff":
            return Response(labels_tiff(results), media_type="image/tiff",
                            headers={"X-Samcell-Metrics": json.dumps(metrics_body(results, False)["frames"])})
        return JSONResponse(metrics_body(results, request.query_params.get("cells", "1") != "0"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    routes = [Route("/health", health), Route("/v1/model", model), Route("/v1/segment", segment, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


async def oversized(request, limit: int) -> bool:
    """True when the declared body exceeds `limit`; the body is then read and dropped (up to
    DRAIN_LIMIT) so the client receives the 413 instead of a connection reset mid-upload."""
    declared = int(request.headers.get("content-length") or 0)
    if declared <= limit:
        return False
    if declared <= DRAIN_LIMIT:
        async for _ in request.stream():
            pass
    return True


async def _body(request, max_bytes: int) -> tuple[bytes, str]:
    """The image bytes and file name from a raw or multipart body, read with a size cap."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(422, "multipart body needs a file field named 'file'")
        return await upload.read(max_bytes + 1), upload.filename or "image"
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"image larger than {max_bytes // 2**20} MB")
        chunks.append(chunk)
    return b"".join(chunks), request.query_params.get("name", "")
