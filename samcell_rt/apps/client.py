"""A small Python client for `samcell-rt serve` (standard library only, besides tifffile/numpy)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import SamcellError


class ServiceError(SamcellError):
    """The service answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def segment_remote(url: str, image: str | Path | bytes, name: str | None = None, timeout: float = 600.0,
                   channel: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """Send an image file (path or bytes) to the service; return (labels, metrics per frame)."""
    import io

    import tifffile

    if isinstance(image, (str, Path)):
        name = name or Path(image).name
        data = Path(image).read_bytes()
    else:
        data = image
    if not name:
        raise ValueError("pass name='X.tif' (the suffix tells the service the format) with raw bytes")
    query = urllib.parse.urlencode({"name": name, "format": "tiff", **({"channel": channel} if channel is not None else {})})
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/segment?{query}", data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            labels = tifffile.imread(io.BytesIO(response.read()))
            metrics = json.loads(response.headers["X-Samcell-Metrics"])
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            body = json.loads(body)["error"]
        except (ValueError, KeyError):
            pass
        raise ServiceError(exc.code, body) from exc
    return labels, metrics
