"""Image files of the results: label TIFFs (ImageJ-calibrated where ImageJ can hold them), PNG overlays
with cell outlines in yellow, and the RGBA layers viewers draw over an image.

Labels are uint16 (uint32 above 65,535 cells), a stack for multi-frame inputs; files are written
atomically (temporary file + rename).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtime.atomic import atomic_path, write_bytes_atomic
from ..runtime.measure import known_pixel_size
from ..runtime.segmenter import Result

OUTLINE_RGB = (255, 255, 0)


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 while the cell count fits, uint32 beyond: labels are never scaled or wrapped."""
    return np.dtype(np.uint16) if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def label_image(results: list[Result]) -> np.ndarray:
    """The labels of one input: (H, W) for a single frame, (N, H, W) for a stack."""
    return np.stack([r.labels for r in results]) if len(results) > 1 else results[0].labels


def _write_tiff(target, data: np.ndarray, pixel_size_um: float | None = None) -> None:
    """Compressed TIFF; in ImageJ's hyperstack layout (frames on T, calibration in microns) when
    ImageJ can hold it (8/16-bit or float32, under 4 GB), so Fiji shows calibrated measurements."""
    import tifffile

    imagej = data.dtype in (np.uint8, np.uint16, np.float32) and data.nbytes < 2**32 - 2**25
    kwargs: dict = {"imagej": True, "metadata": {"axes": "TYX" if data.ndim == 3 else "YX"}} if imagej else \
        {"photometric": "minisblack", "bigtiff": data.nbytes > 2**31}
    pixel_size_um = known_pixel_size(pixel_size_um)  # NaN, inf or 1e300 would break the resolution tags
    if pixel_size_um:
        kwargs["resolution"] = (1 / pixel_size_um, 1 / pixel_size_um)
        if imagej:
            kwargs["metadata"]["unit"] = "um"
        else:
            kwargs.update(resolution=(1e4 / pixel_size_um, 1e4 / pixel_size_um), resolutionunit="CENTIMETER")
    tifffile.imwrite(target, data, compression="zlib", **kwargs)


def write_labels(path: str | Path, labels: np.ndarray, pixel_size_um: float | None = None) -> None:
    """Write labels (H, W) or a stack (N, H, W) as a compressed uint16/uint32 TIFF, atomically."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0:
        raise InputError("labels must be non-negative")
    with atomic_path(path) as tmp:
        _write_tiff(tmp, labels.astype(label_dtype(labels), copy=False), pixel_size_um)


def labels_tiff_bytes(labels: np.ndarray, pixel_size_um: float | None = None) -> bytes:
    """A label image (or stack) as TIFF bytes, for downloads and HTTP responses."""
    buffer = io.BytesIO()
    _write_tiff(buffer, labels.astype(label_dtype(labels), copy=False), pixel_size_um)
    return buffer.getvalue()


def float_tiff_bytes(data: np.ndarray) -> bytes:
    """A float32 array (e.g. distance maps, frames first) as compressed TIFF bytes."""
    buffer = io.BytesIO()
    _write_tiff(buffer, np.asarray(data, dtype=np.float32))
    return buffer.getvalue()


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of each cell's inner boundary pixels."""
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels, mode="inner")


def overlay_image(gray_u8: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB picture of the image with each cell's outline drawn in yellow."""
    rgb = np.repeat(gray_u8[..., None], 3, axis=2)
    rgb[outlines(labels)] = OUTLINE_RGB
    return rgb


def overlay_layer(labels: np.ndarray, mode: str = "outline") -> np.ndarray:
    """Transparent RGBA layer for viewers: yellow outlines, or filled cells one colour per label."""
    rgba = np.zeros(labels.shape + (4,), np.uint8)
    if mode == "fill":
        palette = np.random.default_rng(0).integers(60, 256, (int(labels.max(initial=0)) + 1, 3), dtype=np.uint8)
        rgba[..., :3] = palette[labels]
        rgba[..., 3] = np.where(labels > 0, 160, 0)
    else:
        rgba[outlines(labels)] = (*OUTLINE_RGB, 255)
    return rgba


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding of an RGB or RGBA uint8 array."""
    import cv2

    order = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}[pixels.shape[2]]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(pixels), order))
    if not ok:
        raise OSError("PNG encoding failed")
    return encoded.tobytes()


def write_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write an RGB(A) uint8 array as PNG, atomically."""
    write_bytes_atomic(path, png_bytes(pixels))

