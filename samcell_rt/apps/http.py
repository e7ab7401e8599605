"""HTTP helpers shared by the service and the GUI: bounded bodies, client errors, JSON replies.

Upload limits count the bytes actually received, whatever the client declares: a chunked body
(no Content-Length) is cut off at the limit like any other; its excess is read and dropped up to
DRAIN_LIMIT (and DRAIN_SECONDS) before the 413 goes out, so clients see the answer instead of a
reset; so is a declared Content-Length over the limit, but one over DRAIN_LIMIT is answered 413 at
once (a client declaring 100 GB may never send them).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass

from ..errors import InputFileError, SamcellError

DRAIN_LIMIT = 1 << 30


@dataclass(frozen=True)
class ServerDefaults:
    """Where an HTTP program listens and how large a request it takes, unless told otherwise."""

    port: int
    max_mb: float


SERVICE = ServerDefaults(port=8766, max_mb=256)  # `samcell-rt serve`: one image per request
GUI = ServerDefaults(port=8765, max_mb=512)  # `samcell-rt gui`: many images per upload
DRAIN_SECONDS = 20.0
log = logging.getLogger("samcell_rt.apps")


class RequestError(Exception):
    """A client error with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"body larger than the {limit / 2**20:g} MB limit")


async def _drain(stream, received: int) -> None:
    """Read and drop the rest of a body, up to DRAIN_LIMIT bytes or DRAIN_SECONDS."""
    import asyncio

    async def drop() -> None:
        nonlocal received
        async for chunk in stream:
            received += len(chunk)
            if received > DRAIN_LIMIT:
                return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drop(), DRAIN_SECONDS)


async def read_body(request, limit: int) -> bytes:
    """The whole request body, or RequestError 413 once more than `limit` bytes arrive."""
    stream = request.stream()
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise RequestError(400, "Content-Length is not a number") from None
    if declared > limit:
        if declared <= DRAIN_LIMIT:  # an honest client sends it all: drop it so it sees the 413, not a reset
            await _drain(stream, 0)
        raise too_large(limit)  # beyond DRAIN_LIMIT at once: the client may never send those bytes
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _drain(stream, size)
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request, limit: int, max_files: int):
    """A multipart form parsed from a body read under `limit` (see read_body)."""
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    body = await read_body(request, limit)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=max_files)
    except HTTPException as exc:  # what starlette makes of a MultiPartException inside an app
        raise RequestError(400, f"bad multipart body: {exc.detail}") from None
    except MultiPartException as exc:
        raise RequestError(400, f"bad multipart body: {exc.message}") from None


def error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def query_int(request, name: str, default: int | None = None, minimum: int = 0) -> int | None:
    """An integer query parameter, or RequestError 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"query parameter {name}={raw!r} is not an integer") from None
    if value < minimum:
        raise RequestError(400, f"query parameter {name}={value} must be at least {minimum}")
    return value


def guarded(handler):
    """Turn every failure of a handler into a clear JSON error: RequestError keeps its status, a bad
    image is 422, anything else 500 with its message (and a log line), never a bare traceback page."""
    @functools.wraps(handler)
    async def wrapped(request, *args):
        try:
            return await handler(request, *args)
        except RequestError as exc:
            return error(exc.status, str(exc))
        except SamcellError as exc:
            return error(422 if isinstance(exc, InputFileError) else 500, str(exc))
        except Exception as exc:  # last resort: the server keeps serving
            log.exception("request failed")
            return error(500, f"internal error: {type(exc).__name__}: {exc}")
    return wrapped


def plot_png(draw) -> bytes:
    """PNG bytes of a plot (`draw()`); RequestError 501 naming the extra when matplotlib is missing."""
    from ..reports import plots

    if not plots.available():
        raise RequestError(501, 'plots need the report extra: pip install "samcell-rt[report]"')
    return draw()
