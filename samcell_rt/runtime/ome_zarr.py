"""OME-Zarr (NGFF 0.1-0.5) images: metadata, the full-resolution array and its calibration.

Read with `zarr` (a core dependency) and the NGFF metadata read here, not with a reader package:
the format is a folder of chunked arrays plus JSON, and zarr already reads both, lazily by chunk.
- The image is the first multiscale's first dataset (full resolution); other levels are ignored.
- Axes come from `axes` (names or objects, 0.3+), else NGFF 0.1/0.2's implied t, c, z, y, x.
- Pixel size: the x scale (dataset and multiscale `scale` transformations multiplied) in the x
  axis's unit; without a unit in micrometres (OME's default), except a scale of exactly 1, which
  writers put there when there is no calibration.
- Time: with a t axis, its scale in its unit is the interval between frames.
- A plate or well group is no image: callers enumerate its fields (runs/ does, for folder runs).
- A `.zip` file holding one OME-Zarr image (at its root or in one top folder) reads the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .limits import check_pixels

ZARR_SUFFIXES = (".zarr",)  # "x.ome.zarr" too: the last suffix counts
METADATA_FILES = ("zarr.json", ".zattrs")  # NGFF 0.5 (zarr v3) and 0.1-0.4 (zarr v2)
SPACE_UM = {"angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
TIME_UNITS = {"millisecond": "ms", "second": "s", "minute": "min", "hour": "h", "day": "d"}
_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def ngff_attrs(folder: Path) -> dict:
    """The NGFF attributes of a group folder ({} when it has none): 0.5 nests them under "ome"."""
    for name in METADATA_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        attrs = data.get("attributes", {}) if name == "zarr.json" else data
        if isinstance(attrs, dict):
            return attrs.get("ome", attrs) if isinstance(attrs.get("ome"), dict) else attrs
    return {}


def group_kind(folder: Path) -> str:
    """"image", "plate", "well", "labels" or "" for a folder that is no NGFF group."""
    if not folder.is_dir():
        return ""
    attrs = ngff_attrs(folder)
    for kind in ("plate", "well"):
        if isinstance(attrs.get(kind), dict):
            return kind
    if isinstance(attrs.get("multiscales"), list) and attrs["multiscales"]:
        return "image"
    return "labels" if isinstance(attrs.get("labels"), list) else ""


def is_ome_zarr(path: Path) -> bool:
    """A folder holding an NGFF image, plate or well (by its metadata, whatever its name)."""
    return group_kind(path) in ("image", "plate", "well")


@dataclass
class NgffImage:
    """The full-resolution array of an NGFF image and what its metadata says about it."""

    array: object  # a zarr array: sliced lazily, chunk by chunk
    axes: str  # io's letters: T, C, Z, Y, X (Q for any other axis)
    scale: tuple[float, ...]
    units: tuple[str, ...]
    version: str
    dataset_path: str

    def pixel_size_um(self) -> tuple[float | None, str, str]:
        """(micrometres per pixel, source, warning) from the x axis. A scale without a unit is taken
        in micrometres (OME's default length unit) unless it is exactly 1, the value writers put when
        there is no calibration; an unknown unit is never guessed."""
        index = self.axes.index("X")
        unit, scale = self.units[index], self.scale[index]
        factor = SPACE_UM.get(unit or "micrometer")
        if factor is None or scale <= 0 or (not unit and scale == 1.0):
            return None, "", (f"x axis has {'unit ' + repr(unit) if unit else 'no unit'} and scale {scale:g}: "
                              "not taken as a pixel size (use --pixel-size)")
        return scale * factor, "ome-zarr", ""

    def frame_interval(self) -> tuple[float | None, str]:
        """(interval, unit) of the t axis when it is the only axis that moves, as for TIFF stacks."""
        moving = [a for a, n in zip(self.axes, self.array.shape) if a not in "YXC" and n > 1]
        if moving != ["T"]:
            return None, ""
        index = self.axes.index("T")
        unit = TIME_UNITS.get(self.units[index])
        return (self.scale[index], unit) if unit and self.scale[index] > 0 else (None, "frame")


def open_group(path: Path):
    """The zarr group of an OME-Zarr folder, or of the image inside a `.zip` of one."""
    import zarr

    if path.suffix.lower() != ".zip":
        return zarr.open_group(str(path), mode="r")
    from zarr.storage import ZipStore

    store = ZipStore(path, mode="r")
    names = {name.split("/")[0] for name in _zip_names(path) if "/" in name}
    roots = [""] + sorted(names)
    for root in roots:
        try:
            group = zarr.open_group(store, mode="r", path=root or None)
        except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
            continue  # no group at this level
        attrs = dict(group.attrs)
        if "multiscales" in attrs.get("ome", attrs):
            return group
    raise ImageReadError(path, "zip holds no OME-Zarr image (no multiscales metadata at its root or in a top folder)")


def _zip_names(path: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def open_image(path: Path) -> NgffImage:
    """The full-resolution array and metadata of an OME-Zarr image; ImageReadError for anything else."""
    try:
        group = open_group(path)
        attrs = dict(group.attrs)
        attrs = attrs.get("ome", attrs)
    except ImageReadError:
        raise
    except Exception as exc:  # zarr raises many types for damaged stores
        raise ImageReadError(path, f"not a readable OME-Zarr store ({type(exc).__name__}: {exc})") from exc
    for kind in ("plate", "well"):
        if kind in attrs:
            raise ImageReadError(path, f"is an OME-Zarr {kind}, not an image: give the plate folder to `segment`, "
                                       "which segments every field")
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not multiscales[0].get("datasets"):
        raise ImageReadError(path, "OME-Zarr group has no multiscales image metadata")
    meta = multiscales[0]
    dataset = meta["datasets"][0]
    try:
        array = group[dataset["path"]]
    except Exception as exc:
        raise ImageReadError(path, f"OME-Zarr dataset {dataset.get('path')!r} cannot be opened "
                                   f"({type(exc).__name__}: {exc})") from exc
    ndim = len(array.shape)
    names, units = _axes(meta.get("axes"), ndim, path)
    scale = _scale(meta.get("coordinateTransformations"), ndim)
    scale = tuple(a * b for a, b in zip(scale, _scale(dataset.get("coordinateTransformations"), ndim)))
    version = str(meta.get("version") or attrs.get("version") or "")
    return NgffImage(array, names, scale, units, version, dataset["path"])


def _axes(axes, ndim: int, path: Path) -> tuple[str, tuple[str, ...]]:
    """(letters, units) of the axes; NGFF before 0.3 implies t, c, z, y, x (the last `ndim`)."""
    if axes is None:
        axes = list("tczyx"[-ndim:])
    entries = [{"name": a} if isinstance(a, str) else a for a in axes]
    if len(entries) != ndim or not all(isinstance(a, dict) for a in entries):
        raise ImageReadError(path, f"OME-Zarr axes {axes!r} do not match the array's {ndim} dimensions")
    letters = "".join(_AXIS_LETTERS.get(str(a.get("name", "")).lower(), "Q") for a in entries)
    return letters, tuple(str(a.get("unit") or "").lower() for a in entries)


def _scale(transformations, ndim: int) -> tuple[float, ...]:
    for item in transformations or []:
        if isinstance(item, dict) and item.get("type") == "scale" and len(item.get("scale", [])) == ndim:
            return tuple(float(v) for v in item["scale"])
    return (1.0,) * ndim


def read_planes(path: Path, max_pixels: int) -> tuple[np.ndarray, str, float | None, str, tuple, list[str]]:
    """(data, axes, pixel size, source, (interval, unit), warnings) of an OME-Zarr image, read whole."""
    image = open_image(path)
    check_pixels(path, tuple(image.array.shape), max_pixels)
    try:
        data = np.asarray(image.array[...])
    except Exception as exc:  # missing or corrupt chunks
        raise ImageReadError(path, f"OME-Zarr chunks cannot be read ({type(exc).__name__}: {exc})") from exc
    pixel_size, source, warning = image.pixel_size_um()
    return data, image.axes, pixel_size, source, image.frame_interval(), [warning] if warning else []


class Plane:
    """One 2-D plane of an NGFF image as a lazy array: `plane[rows, cols]` reads only those chunks."""

    def __init__(self, image: NgffImage, path: Path, channel: int | None) -> None:
        shape = dict(zip(image.axes, image.array.shape))
        extra = {a: n for a, n in shape.items() if a not in "YXC" and n > 1}
        if extra:
            raise ImageReadError(path, f"a single plane is needed here, but axes {extra} have more than one entry")
        count = shape.get("C", 1)
        if count > 1 and channel is None:
            raise ImageReadError(path, f"image has {count} channels; choose one, 0..{count - 1} (--channel N)")
        if channel is not None and not 0 <= channel < count:
            raise ImageReadError(path, f"--channel {channel} out of range: the image has {count} channels")
        self._array, self._axes, self._channel = image.array, image.axes, channel or 0
        self.shape = (shape["Y"], shape["X"])
        self.dtype = np.dtype(image.array.dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        index = tuple(key[0] if a == "Y" else key[1] if a == "X" else self._channel if a == "C" else 0
                      for a in self._axes)
        return np.asarray(self._array[index])


def plane_pixels(path: Path) -> tuple[int, int] | None:
    """(Y, X) of an OME-Zarr image that holds one plane per channel; None otherwise or when unreadable."""
    try:
        image = open_image(path)
    except ImageReadError:
        return None
    shape = dict(zip(image.axes, image.array.shape))
    if any(n > 1 for a, n in shape.items() if a not in "YXC") or "Y" not in shape or "X" not in shape:
        return None
    return shape["Y"], shape["X"]
