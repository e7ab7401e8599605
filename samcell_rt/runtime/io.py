"""Read microscope images into 2-D planes and write labels and overlays.

Reading rules (documented for users in the README):
- TIFF / OME-TIFF via tifffile: the first series; every plane along the non-spatial axes
  (T, Z, positions, pages) becomes one frame, in file order.
- PNG / JPEG / BMP via OpenCV, 8 or 16 bit.
- Colour: RGB(A) samples become gray by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), alpha
  dropped. `channel=N` picks one channel instead. A channel axis that is not 3/4 colour samples
  needs an explicit `channel`, because averaging fluorescence channels would be a silent guess.
- Any failure raises `ImageReadError` naming the file and the cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .atomic import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + RASTER_SUFFIXES
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class ImageStack:
    """One input file as gray 2-D frames (N, H, W) in their original dtype."""

    path: Path
    frames: np.ndarray
    pixel_size_um: float | None = None

    @property
    def is_stack(self) -> bool:
        return self.frames.shape[0] > 1


def is_image_file(path: Path) -> bool:
    """True when the file name has a suffix samcell-rt can read."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path, channel: int | None = None) -> ImageStack:
    """Read an image file as gray frames; raise ImageReadError on any problem."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file does not exist")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            data, axes, pixel_size = _read_tiff(path)
        elif suffix in RASTER_SUFFIXES:
            data, axes, pixel_size = _read_raster(path), "YXS", None
        else:
            raise ImageReadError(path, f"unsupported file type {suffix!r} (use TIFF, PNG, JPEG or BMP)")
    except OSError as exc:  # permissions, vanished files, I/O errors
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    frames = _to_gray_frames(path, data, axes, channel)
    return ImageStack(path=path, frames=frames, pixel_size_um=pixel_size)


def _read_tiff(path: Path) -> tuple[np.ndarray, str, float | None]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "TIFF holds no image data")
            series = tif.series[0]
            data = series.asarray()
            expected = int(np.prod(series.shape))
            pixel_size = _tiff_pixel_size_um(tif)
            axes = series.axes
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt input
        raise ImageReadError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if data.size != expected:
        raise ImageReadError(path, "TIFF is truncated (fewer pixels than its header declares)")
    return data, axes, pixel_size


def _tiff_pixel_size_um(tif) -> float | None:
    """Pixel size in micrometres from OME or ImageJ metadata or the resolution tags, if any."""
    import re

    if tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if match and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
            return float(match.group(1))
    page = tif.pages.first
    res = page.tags.get("XResolution")
    unit_tag = page.tags.get("ResolutionUnit")
    if res is None or unit_tag is None:
        return None
    num, den = res.value
    if num == 0:
        return None
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit_tag.value))  # inch, centimetre
    if per_unit_um is None:
        if tif.imagej_metadata and tif.imagej_metadata.get("unit") in ("micron", "um", "\u00b5m"):
            return den / num
        return None
    return per_unit_um * den / num


def _read_raster(path: Path) -> np.ndarray:
    import cv2

    buffer = np.fromfile(path, dtype=np.uint8)
    data = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageReadError(path, f"not a readable {path.suffix.lstrip('.').upper()} image (corrupt or truncated)")
    if data.ndim == 2:
        return data[..., None]
    if data.shape[2] >= 3:  # OpenCV decodes BGR(A); make it RGB(A) like TIFF
        data = data[..., [2, 1, 0] + list(range(3, data.shape[2]))]
    return data


def _to_gray_frames(path: Path, data: np.ndarray, axes: str, channel: int | None) -> np.ndarray:
    """Reduce any axes layout to (N, H, W) gray frames following the module's colour rule."""
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(path, f"no Y/X image axes in layout {axes!r}")
    color_axes = [i for i, a in enumerate(axes) if a in "SC" and data.shape[i] > 1]
    if len(color_axes) > 1:
        raise ImageReadError(path, f"more than one channel axis in layout {axes!r}")
    if color_axes:
        data, axes = _reduce_channels(path, data, axes, color_axes[0], channel)
    elif channel not in (None, 0):
        raise ImageReadError(path, f"--channel {channel} asked for, but the image has one channel")
    data = np.squeeze(data, axis=tuple(i for i, a in enumerate(axes) if a in "SC"))
    axes = axes.replace("S", "").replace("C", "")
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    if data.size == 0:
        raise ImageReadError(path, f"image has no pixels (shape {data.shape})")
    return np.ascontiguousarray(data.reshape((-1,) + data.shape[-2:]))


def _reduce_channels(path: Path, data: np.ndarray, axes: str, axis: int, channel: int | None):
    count = data.shape[axis]
    if channel is not None:
        if not 0 <= channel < count:
            raise ImageReadError(path, f"--channel {channel} out of range: the image has {count} channels")
        return np.take(data, [channel], axis=axis), axes
    if count not in (3, 4):
        raise ImageReadError(path, f"image has {count} channels; choose one with --channel N (0..{count - 1})")
    rgb = np.moveaxis(np.take(data, [0, 1, 2], axis=axis), axis, -1).astype(np.float64)
    luma = rgb @ _LUMA
    if data.dtype.kind in "ui":
        luma = np.rint(luma).astype(data.dtype)  # weights sum to 1: stays inside the dtype range
    else:
        luma = luma.astype(np.float32)
    return np.expand_dims(luma, axis), axes


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 while the cell count fits, uint32 beyond: labels are never scaled or wrapped."""
    return np.dtype(np.uint16) if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def write_labels(path: str | Path, labels: np.ndarray, pixel_size_um: float | None = None) -> None:
    """Write labels (H, W) or a stack (N, H, W) as a compressed uint16/uint32 TIFF, atomically."""
    import tifffile

    labels = np.asarray(labels)
    if labels.min(initial=0) < 0:
        raise ValueError("labels must be non-negative")
    data = labels.astype(label_dtype(labels), copy=False)
    kwargs = {}
    if pixel_size_um:
        kwargs = {"resolution": (1e4 / pixel_size_um, 1e4 / pixel_size_um), "resolutionunit": "CENTIMETER"}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack",
                         bigtiff=data.nbytes > 2**31, **kwargs)


def labels_tiff_bytes(labels: np.ndarray) -> bytes:
    """A label image (or stack) encoded as a compressed uint16/uint32 TIFF, for HTTP responses."""
    import io

    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, labels.astype(label_dtype(labels)), compression="zlib", photometric="minisblack")
    return buffer.getvalue()


def write_float_tiff(path: str | Path, data: np.ndarray) -> None:
    """Write a float32 array (e.g. distance maps, frames first) as a compressed TIFF, atomically."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(data, dtype=np.float32), compression="zlib", photometric="minisblack")


def overlay_image(gray_u8: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB picture of the image with each cell's outline drawn in yellow."""
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(gray_u8[..., None], 3, axis=2)
    rgb[find_boundaries(labels, mode="inner")] = (255, 255, 0)
    return rgb


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 array as PNG, atomically."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
