"""`samcell-rt serve`: an HTTP API for instrument software that is not Python (extra `gui`).

Endpoints:
- GET  /health                 -> {"status": "ok"}
- GET  /v1/model               -> model name, version, thresholds, engine and precision
- POST /v1/segment?name=X.tif[&format=json|labels|cells|rois|geojson|distance|timeline][&channel=N][&cells=0]
  -> body: the image file's bytes (or multipart field `file`). FORMATS lists the answers:
  `json` (default) metrics per frame and the per-cell table; every per-input output of the folder
  writer (`labels`, also called `tiff`: uint16/uint32 TIFF, a stack for multi-frame input; `cells`
  CSV; `rois`; `geojson`; `distance`) with the metrics as JSON in the `X-Samcell-Metrics` header;
  `timeline` (stacks) a PNG of cell count and confluency over the frames, times from the stack's
  metadata, with the doubling time fit as JSON in `X-Samcell-Growth`.
  `channel` picks one channel of multi-channel images. Microscope containers (CZI, ND2, LIF; extra
  `formats`) and OME-Zarr stores sent as `.zip` are read as files are. What an upload decodes to
  counts against the upload limit (`--max-mb`) too, checked from its header or metadata before
  anything is inflated: a small compressed upload cannot take the service's memory.
- POST /v1/segment?path=REL[&...] (no body) -> the same for an image or OME-Zarr store already on the
  server's storage, under the folder the service was started with (`--data-root`), for stores too
  large to upload; paths that leave that folder (.., symlinks at any level inside a store) are
  refused, and no answer names the data root itself.
Errors: 400 bad query, 413 too large, 415 not an image type, 422 unreadable image or bad values,
500 a model failure; every error is JSON {"error": message}.

The model is loaded once. A batching worker takes every request waiting at that moment and runs
their frames through one `segment_many` call, so concurrent requests share engine batches; any
failure fails only the requests of that batch, never the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from ..reports.timeline import series_fit, stack_series
from ..runs.outputs import KINDS, OUTPUTS
from ..runtime.io import MAX_PIXELS, UPLOAD_SUFFIXES, ImageStack, read_image
from ..runtime.measure import image_metrics, json_columns, with_physical_units
from ..runtime.ome_zarr import is_ome_zarr
from ..runtime.segmenter import Result, Segmenter
from .http import SERVICE, RequestError, guarded, plot_png, query_int, read_body, read_form

ALIASES = {"tiff": "labels"}  # the name earlier clients ask for
FORMATS = {  # the service's own answers, then every per-input document of the output table (runs.outputs)
    "json": "metrics per frame and the per-cell table (JSON)",
    "timeline": "stacks: count and confluency over time (PNG), doubling-time fit in the X-Samcell-Growth header",
    **{kind.name: f"{kind.description}; metrics in the X-Samcell-Metrics header" for kind in OUTPUTS if kind.render},
    **{alias: f"the same as {name}" for alias, name in ALIASES.items()},
}

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
            self._segment(self._gather(first))

    def _gather(self, first: _Request) -> list[_Request]:
        """`first` plus every request waiting now (up to max_requests)."""
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
        return batch

    def _segment(self, batch: list[_Request]) -> None:
        items = [((r, f), frame) for r, request in enumerate(batch) for f, frame in enumerate(request.frames)]
        results: dict[int, list[Result]] = {r: [] for r in range(len(batch))}
        try:
            for result in self.segmenter.segment_many(items, on_error="report"):
                results[result.key[0]].append(result)
        except Exception as exc:  # a model or engine failure fails these requests, not the worker
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


def decode_image(data: bytes, name: str, channel: int | None = None, max_pixels: int = MAX_PIXELS,
                 max_bytes: int | None = None) -> ImageStack:
    """An uploaded image as read (frames, calibration, frame times); RequestError for anything a client got wrong.
    `max_bytes` bounds what a compressed store may decode to, so a small upload cannot inflate past it."""
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise RequestError(415, f"{_shown(name)!r}: not an accepted image type ({', '.join(UPLOAD_SUFFIXES)}); "
                                "pass ?name=FILE.tif")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return read_image(path, channel, max_pixels, max_bytes=max_bytes)
        except ImageReadError as exc:
            raise RequestError(422, f"{_shown(name)}: {exc.cause.replace(str(path), _shown(name))}") from exc


MAX_PATH = 4096  # characters of a path= query; longer is no path on any file system
MAX_WALK = 1_000_000  # entries of a store checked for symlinks before a path= read; more is refused


def served_path(root: Path | None, relative: str) -> Path:
    """`relative` under the service's data root; RequestError unless there is one and the path, and
    every file and folder below it (a store's arrays and chunks), stays in it. Messages name the
    path as the client gave it, never the data root."""
    if root is None:
        raise RequestError(400, "path= needs the service started with --data-root DIR")
    if "\x00" in relative:
        raise RequestError(400, "path= contains a NUL byte")
    if len(relative) > MAX_PATH or any(len(part.encode()) > 255 for part in Path(relative).parts):
        raise RequestError(400, f"path= is too long ({len(relative):,} characters; at most {MAX_PATH} and 255 bytes "
                                "per name)")
    base = Path(root).resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops, names the file system refuses
        raise RequestError(400, f"path {_shown(relative)!r} cannot be resolved ({_reason(exc)})") from None
    if not target.is_relative_to(base):
        raise RequestError(403, f"path {_shown(relative)!r} is outside the service's data root")
    escape = _escaping_link(base, target)
    if escape is not None:
        raise RequestError(403, f"path {_shown(relative)!r} holds {escape}, a link outside the service's data root")
    return target


def _escaping_link(base: Path, target: Path) -> str | None:
    """The first entry under `target` (relative to `base`) that is a symlink resolving outside `base`,
    following links that stay inside; None when there is none. Checked before a store is read, so an
    array or chunk linked in from elsewhere is never served; other folders are not read at all (the
    reader refuses them), so they are not walked either (`path=.` would walk the whole root)."""
    if not (target.is_dir() and is_ome_zarr(target)):
        return None
    pending, seen, walked = [target], {target}, 0
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # the read reports what cannot be listed
        for entry in entries:
            walked += 1
            if walked > MAX_WALK:
                return f"more than {MAX_WALK:,} entries (too many to check)"
            path = Path(entry.path)
            if not entry.is_symlink():
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                continue
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue  # a dangling link reads as a missing chunk
            if not resolved.is_relative_to(base):
                return str(path.relative_to(base))
            if resolved.is_dir() and resolved not in seen:
                seen.add(resolved)
                pending.append(resolved)
    return None


def _shown(text: str, limit: int = 200) -> str:
    """Client-given text as echoed in an answer: at most `limit` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


def read_served(path: Path, channel: int | None, max_pixels: int, root: Path | None = None) -> ImageStack:
    """An image or OME-Zarr store on the server's storage; RequestError 422 naming it (relative to
    the data root, which is never shown) when unreadable."""
    shown = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
    try:
        return read_image(path, channel, max_pixels)
    except ImageReadError as exc:
        cause = exc.cause.replace(str(root), "<data-root>") if root is not None else exc.cause
        raise RequestError(422, f"{shown}: {cause}") from exc


def metrics_body(results: list[Result], include_cells: bool, pixel_size_um: float | None = None) -> dict:
    """Per-frame numbers (and cell tables), with µm columns when the image carries its pixel size."""
    frames = [{"frame": i, **(image_metrics(r.labels, r.cells, pixel_size_um) if pixel_size_um else r.metrics),
               "pixel_size_um": pixel_size_um, "diameter_px": r.diameter, "scale": r.scale, "warnings": r.warnings,
               **({"cells_table": json_columns(with_physical_units(r.cells, pixel_size_um))} if include_cells else {})}
              for i, r in enumerate(results)]
    return {"frames": frames, "shape": list(results[0].labels.shape)}


def create_service(segmenter: Segmenter, max_mb: float = SERVICE.max_mb, max_pixels: int = MAX_PIXELS,
                   data_root: Path | None = None):
    """The Starlette app around one loaded model; `data_root` lets requests name files under it."""
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
                             "precision": segmenter.engine_precision,
                             "source_sha256": info.source_sha256, "formats": FORMATS})

    @guarded
    async def segment(request: Request) -> Response:
        wants = request.query_params.get("format", "json")
        if wants not in FORMATS:
            raise RequestError(400, f"format={wants!r} is not offered; choose one of {', '.join(FORMATS)}")
        channel = query_int(request, "channel")
        if "path" in request.query_params:
            target = await asyncio.to_thread(served_path, data_root, request.query_params["path"])
            name, stack = target.name, await asyncio.to_thread(read_served, target, channel, max_pixels,
                                                                Path(data_root).resolve())
        else:
            data, name = await _upload(request, max_bytes)
            stack = await asyncio.to_thread(decode_image, data, name, channel, max_pixels, max_bytes)
        if wants == "timeline" and not stack.is_stack:
            raise RequestError(400, "format=timeline needs a stack of two or more frames")
        results = await asyncio.wrap_future(worker.submit(stack.frames))
        if wants == "timeline":
            return await asyncio.to_thread(_timeline_response, Path(name).stem, stack, results)
        return _answer(wants, results, stack.pixel_size_um, request.query_params.get("cells", "1") != "0")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    routes = [Route("/health", health), Route("/v1/model", model), Route("/v1/segment", segment, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def _answer(wants: str, results: list[Result], pixel_size_um: float | None, include_cells: bool):
    """The response body for one of FORMATS (calibrated by the image's own pixel size where it has one)."""
    from starlette.responses import JSONResponse, Response

    kind = KINDS.get(ALIASES.get(wants, wants))
    if kind is None:
        return JSONResponse(metrics_body(results, include_cells, pixel_size_um))
    metrics = {"X-Samcell-Metrics": json.dumps(metrics_body(results, False, pixel_size_um)["frames"])}
    return Response(kind.render(results, pixel_size_um), media_type=kind.media_type, headers=metrics)


def _timeline_response(name: str, stack: ImageStack, results: list[Result]):
    """PNG of the stack's count and confluency over time; the growth fit (or null) in X-Samcell-Growth."""
    from dataclasses import asdict

    from starlette.responses import Response

    from ..reports import plots

    series = stack_series(name, stack, [r.metrics for r in results])
    fit = series_fit(series)
    png = plot_png(lambda: plots.timeline_png(series, fit))
    return Response(png, media_type="image/png", headers={"X-Samcell-Growth": json.dumps(asdict(fit) if fit else None)})


async def _upload(request, max_bytes: int) -> tuple[bytes, str]:
    """The image bytes and file name from a raw or multipart body, read under the size limit."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await read_form(request, max_bytes, max_files=1)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(422, "multipart body needs a file field named 'file'")
        return await upload.read(), upload.filename or "image"
    return await read_body(request, max_bytes), request.query_params.get("name", "")
