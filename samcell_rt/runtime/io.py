"""Read microscope images into 2-D planes and write labels and overlays.

Reading rules (documented for users in the README):
- TIFF / OME-TIFF via tifffile: the first series; every plane along the non-spatial axes
  (T, Z, positions, pages) becomes one frame, in file order.
- PNG / JPEG / BMP via OpenCV, 8 or 16 bit.
- CZI, ND2, LIF (extra `formats`; containers.py) and OME-Zarr folders or zipped stores (zarr;
  ome_zarr.py): scenes, positions, tiles, time and Z become frames as for TIFF stacks, channels
  are chosen with `channel`, pixel size and frame interval come from the file's own metadata.
  `scene=N` reads one CZI scene, LIF image or ND2 position only (0 for files without them).
- Colour: RGB(A) samples (the S axis: photos, photometric-RGB TIFF, RGB container pixels) become
  gray by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), alpha dropped, and the reader says so
  (a warning). `channel=N` picks one channel instead. A channel axis (C: fluorescence channels,
  whatever their number, three and four included) needs an explicit `channel`, because mixing
  fluorescence channels by colour weights would be a silent guess.
- Sizes are read from the header before any pixel is decoded: a file claiming more than
  `max_pixels` pixels (default MAX_PIXELS) is refused, so a lying header cannot exhaust memory.
  Reads are also bounded by bytes decoded (`max_bytes`, which the service sets to its upload
  limit, so a small compressed upload cannot inflate past it), and OME-Zarr reads by chunks
  touched, all checked from headers and metadata before anything is inflated.
- Pixel size: only calibration a microscope program writes counts: OME PhysicalSize, ImageJ
  metadata in microns, or TIFF resolution tags whose pixel size is plausible for a microscope
  (MICROSCOPE_UM). General programs write 72 or 300 dpi by default (352.8 / 84.7 um per
  pixel): that is no calibration, and physical units are left empty. A declared size that is NaN,
  infinite, not positive or absurd (limits.pixel_size_problem) is unknown too, with a warning.
- Time: frames are a time series when the only non-spatial axis is T (or a plain page sequence);
  the interval comes from OME `TimeIncrement` (+ unit) or ImageJ `finterval` (+ `tunit`), else
  frames count as time steps (unit "frame"). Z-stacks and positions carry no time.
- Any failure raises `ImageReadError` naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from . import MAX_PIXELS
from .limits import pixel_size_problem
from .planes import Planes, ReadLimits

MICROSCOPE_UM = (0.005, 20.0)  # plausible micrometres per pixel, from super-resolution to macro lenses
TIFF_SUFFIXES = (".tif", ".tiff")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CONTAINER_SUFFIXES = (".czi", ".nd2", ".lif")
IMAGE_SUFFIXES = TIFF_SUFFIXES + RASTER_SUFFIXES + CONTAINER_SUFFIXES
ZIPPED_ZARR_SUFFIXES = (".zarr.zip",)  # a zipped OME-Zarr store is recognised by its name in folders
UPLOAD_SUFFIXES = IMAGE_SUFFIXES + (".zip",)  # GUI and service uploads: any .zip is taken as a zipped OME-Zarr
_LUMA = np.array([0.299, 0.587, 0.114])
PIXEL_KINDS = "buif"  # bool, unsigned, signed, float: complex, text, dates and records are no intensities


@dataclass
class ImageStack:
    """One input file as gray 2-D frames (N, H, W) in their original dtype."""

    path: Path
    frames: np.ndarray
    pixel_size_um: float | None = None
    pixel_size_source: str = ""  # "ome", "imagej", "tiff-resolution", "czi", "nd2", "lif", "ome-zarr" or ""
    warnings: list[str] = field(default_factory=list)  # what the TIFF reader noticed, once per file
    frame_interval: float | None = None  # time between frames in `time_unit`, from OME/ImageJ metadata
    time_unit: str = ""  # "" when the frames are no time series; "frame" when the interval is unknown

    def frame_time(self, index: int) -> float | None:
        """Time of frame `index` in `time_unit` (the index itself without an interval); None without a time axis."""
        if not self.time_unit:
            return None
        return index * self.frame_interval if self.frame_interval else float(index)

    @property
    def is_stack(self) -> bool:
        return self.frames.shape[0] > 1


def is_image_file(path: Path) -> bool:
    """True when the file name has a suffix samcell-rt can read (a zipped OME-Zarr store by `.zarr.zip`)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or path.name.lower().endswith(ZIPPED_ZARR_SUFFIXES)


def read_image(path: str | Path, channel: int | None = None, max_pixels: int = MAX_PIXELS,
               scene: int | None = None, max_bytes: int | None = None) -> ImageStack:
    """Read an image file as gray frames (of one `scene` where asked); raise ImageReadError on any problem.
    `max_bytes` bounds the bytes decoded (None: only the pixel limit), from the header's sizes."""
    from .ome_zarr import is_ome_zarr

    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file does not exist")
    zarr_folder = path.is_dir() and is_ome_zarr(path)
    if path.is_dir() and not zarr_folder:
        if path.suffix.lower() == ".zarr":
            raise ImageReadError(path, "is named like an OME-Zarr store but holds no NGFF image metadata (no "
                                       "multiscales, plate or well in its .zattrs or zarr.json)")
        raise ImageReadError(path, "is a folder, not an image file (nor an OME-Zarr image)")
    if not zarr_folder and path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    suffix = path.suffix.lower()
    if not zarr_folder and suffix not in IMAGE_SUFFIXES + (".zip",):
        raise ImageReadError(path, f"unsupported file type {suffix!r} (use TIFF, PNG, JPEG, BMP, CZI, ND2, LIF or "
                                   "OME-Zarr)")
    try:
        with tiff_warnings() as warnings:
            planes = _read_any(path, zarr_folder, ReadLimits(path, max_pixels, max_bytes), scene)
    except OSError as exc:  # permissions, vanished files, I/O errors
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    warnings.extend(planes.remarks)
    if planes.data.dtype.kind not in PIXEL_KINDS:
        raise ImageReadError(path, f"pixels of type {planes.data.dtype} (not numbers a microscope records) cannot be "
                                   "segmented")
    pixel_size, source = planes.pixel_size_um, planes.source
    if pixel_size is not None and (problem := pixel_size_problem(pixel_size)):
        warnings.append(f"{problem}: taken as unknown (use --pixel-size)")
        pixel_size, source = None, ""
    frames = _to_gray_frames(path, planes.data, planes.axes, channel, warnings)
    interval, unit = (planes.frame_interval, planes.time_unit) if frames.shape[0] > 1 else (None, "")
    return ImageStack(path, frames, pixel_size, source, list(dict.fromkeys(warnings)), interval, unit)


def _read_any(path: Path, zarr_folder: bool, limits: ReadLimits, scene: int | None) -> Planes:
    """The planes of `path` by the reader for its kind of file."""
    suffix = path.suffix.lower()
    if suffix in CONTAINER_SUFFIXES and not zarr_folder:
        from .containers import read_container

        return read_container(path, limits, scene)
    if scene not in (None, 0):
        raise ImageReadError(path, f"--scene {scene} asked for, but this file has no scenes")
    if zarr_folder or suffix == ".zip":
        from .ome_zarr import read_planes

        return read_planes(path, limits)
    if suffix in TIFF_SUFFIXES:
        return _read_tiff(path, limits)
    return Planes(_read_raster(path, limits), "YXS")


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tiff_warnings() -> Iterator[list[str]]:
    """Collect what tifffile logs while a file is opened, instead of letting it print: callers
    report it once per file with the file's name (a header probe and the read would print it twice)."""
    logger = logging.getLogger("tifffile")
    messages: list[str] = []
    handler, propagate = _Collect(messages), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _read_tiff(path: Path, limits: ReadLimits) -> Planes:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "TIFF holds no image data")
            series = tif.series[0]
            limits.claim(series.shape, series.dtype.itemsize)
            data = series.asarray()
            expected = int(np.prod(series.shape))
            pixel_size, source = tiff_pixel_size_um(tif)
            axes = series.axes
            interval, unit = tiff_frame_interval(tif, axes, series.shape)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types for corrupt input
        raise ImageReadError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if data.size != expected:
        raise ImageReadError(path, "TIFF is truncated (fewer pixels than its header declares)")
    return Planes(data, axes, pixel_size, source, interval, unit)


def tiff_frame_interval(tif, axes: str, shape: tuple[int, ...]) -> tuple[float | None, str]:
    """(interval, unit) when the frames form a time series, else (None, ""). Only T or a plain page
    sequence (I, Q) counts as time: a Z-stack or a set of positions is no time-lapse."""
    import re

    moving = [a for a, n in zip(axes, shape) if a not in "YXSC" and n > 1]
    if moving not in (["T"], ["I"], ["Q"]):
        return None, ""
    if tif.ome_metadata:
        pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", tif.ome_metadata)
        step = re.search(r'TimeIncrement="([0-9.eE+-]+)"', pixels.group(0)) if pixels else None
        unit = re.search(r'TimeIncrementUnit="([^"]+)"', pixels.group(0)) if pixels else None
        if step and _usable_interval(float(step.group(1))):
            return float(step.group(1)), unit.group(1) if unit else "s"
    meta = tif.imagej_metadata or {}
    try:
        interval = float(meta.get("finterval", 0))
    except (TypeError, ValueError):
        interval = 0.0
    if _usable_interval(interval):
        return interval, str(meta.get("tunit") or "s")
    return None, "frame"


def _usable_interval(value: float) -> bool:
    """A frame interval that can time frames: positive and finite (ImageJ may write `finterval=inf`)."""
    return 0 < value < float("inf")


def tiff_pixel_size_um(tif) -> tuple[float | None, str]:
    """(micrometres per pixel, where it came from) from microscope calibration only; (None, "") otherwise."""
    import re

    if tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if match and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m")):
            return _plausible(float(match.group(1)), "ome")
    page = tif.pages.first
    res, unit_tag = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
    if res is None:
        return None, ""
    num, den = res.value
    if num == 0:
        return None, ""
    if tif.imagej_metadata and tif.imagej_metadata.get("unit") in ("micron", "um", "\u00b5m"):
        return _plausible(den / num, "imagej")
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(int(unit_tag.value) if unit_tag else 0)  # inch, centimetre
    return _plausible(per_unit_um * den / num, "tiff-resolution") if per_unit_um else (None, "")


def _plausible(pixel_um: float, source: str) -> tuple[float | None, str]:
    low, high = MICROSCOPE_UM
    return (pixel_um, source) if low <= pixel_um <= high else (None, "")


def _read_raster(path: Path, limits: ReadLimits) -> np.ndarray:
    import cv2
    import imagesize

    width, height = imagesize.get(path)
    if width < 0 or height < 0:
        raise ImageReadError(path, f"not a readable {path.suffix.lstrip('.').upper()} image (no size in its header)")
    limits.claim((height, width))  # one byte a pixel at least: the header gives no depth here
    buffer = np.fromfile(path, dtype=np.uint8)
    try:
        data = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(path, f"OpenCV cannot decode it ({exc.err})") from exc
    if data is None:
        raise ImageReadError(path, f"not a readable {path.suffix.lstrip('.').upper()} image (corrupt or truncated)")
    if data.ndim == 2:
        return data[..., None]
    if data.shape[2] >= 3:  # OpenCV decodes BGR(A); make it RGB(A) like TIFF
        data = data[..., [2, 1, 0] + list(range(3, data.shape[2]))]
    return data


def _to_gray_frames(path: Path, data: np.ndarray, axes: str, channel: int | None, warnings: list[str]) -> np.ndarray:
    """Reduce any axes layout to (N, H, W) gray frames following the module's colour rule (what it
    did to colour goes to `warnings`)."""
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(path, f"no Y/X image axes in layout {axes!r}")
    color_axes = [i for i, a in enumerate(axes) if a in "SC" and data.shape[i] > 1]
    if len(color_axes) > 1:
        raise ImageReadError(path, f"more than one channel axis in layout {axes!r}")
    if color_axes:
        data, axes = _reduce_channels(path, data, axes, color_axes[0], channel, warnings)
    elif channel not in (None, 0):
        raise ImageReadError(path, f"--channel {channel} asked for, but the image has one channel")
    data = np.squeeze(data, axis=tuple(i for i, a in enumerate(axes) if a in "SC"))
    axes = axes.replace("S", "").replace("C", "")
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    if data.size == 0:
        raise ImageReadError(path, f"image has no pixels (shape {data.shape})")
    return np.ascontiguousarray(data.reshape((-1,) + data.shape[-2:]))


def _reduce_channels(path: Path, data: np.ndarray, axes: str, axis: int, channel: int | None, warnings: list[str]):
    count = data.shape[axis]
    if channel is not None:
        if not 0 <= channel < count:
            raise ImageReadError(path, f"--channel {channel} out of range: the image has {count} channels")
        return np.take(data, [channel], axis=axis), axes
    if axes[axis] != "S" or count not in (3, 4):
        raise ImageReadError(path, f"image has {count} {'colour samples' if axes[axis] == 'S' else 'channels'}; "
                                   f"choose one, 0..{count - 1} (--channel N on the command line, channel=N in the "
                                   "service): channels are never mixed")
    warnings.append(f"{'RGBA' if count == 4 else 'RGB'} colour converted to gray by luma (0.299 R + 0.587 G + "
                    "0.114 B); pass --channel N to segment one colour channel instead")
    return np.expand_dims(rgb_to_gray(np.moveaxis(data, axis, -1)), axis), axes


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Gray from the first three samples of the last axis by BT.601 luma, in the input's integer
    dtype (the weights sum to 1, so values stay in range) or float32."""
    luma = rgb[..., :3].astype(np.float64) @ _LUMA
    return np.rint(luma).astype(rgb.dtype) if rgb.dtype.kind in "ui" else luma.astype(np.float32)
