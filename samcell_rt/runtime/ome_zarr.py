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
- Metadata is validated once (`_multiscale`, `_axes`, `_scale`): any malformed shape is an
  ImageReadError naming the file, never a TypeError from deep inside a run.
- Reads are bounded before anything is inflated (`check_reads`): by the pixels asked for (limits),
  by the chunks touched (zarr spends about half a millisecond per chunk even on missing ones, so a
  store of 1x1 chunks is minutes of work for a few kilobytes), by the bytes decoded (chunks far
  larger than the image, and the caller's `max_bytes`), and in a zip by each member's declared
  uncompressed size (the zip store inflates whole members).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .limits import check_bytes, pixel_size_problem
from .planes import Planes, ReadLimits

ZARR_SUFFIXES = (".zarr",)  # "x.ome.zarr" too: the last suffix counts
METADATA_FILES = ("zarr.json", ".zattrs")  # NGFF 0.5 (zarr v3) and 0.1-0.4 (zarr v2)
SPACE_UM = {"angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6}
TIME_UNITS = {"millisecond": "ms", "second": "s", "minute": "min", "hour": "h", "day": "d"}
_AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
ZARR_DOCUMENTS = METADATA_FILES + (".zarray", ".zgroup", ".zmetadata")
METADATA_BYTES = 16 << 20  # no NGFF metadata document is larger; a zip member claiming more is refused
MAX_ZIP_MEMBERS = 100_000  # a zipped image (1 Gpx in 128 x 128 chunks is 65,536) never has more; parsing more costs GBs
FEW_CHUNKS = 4096  # a read touching this many chunks is quick (about two seconds) whatever their size
MIN_CHUNK_PIXELS = 64 * 64  # beyond FEW_CHUNKS, chunks must be at least this large: else the read is chunk overhead
CHUNK_WASTE = 4  # chunks may decode this many times the pixels read (edge chunks) ...
SMALL_READ = 1 << 22  # ... or this many pixels, whichever is more


def ngff_attrs(folder: Path) -> dict:
    """The NGFF attributes of a group folder ({} when it has none): 0.5 nests them under "ome"."""
    for name in METADATA_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue  # a document holding a list or a number is no group's metadata
        attrs = data.get("attributes", {}) if name == "zarr.json" else data
        if isinstance(attrs, dict):
            return _unnested(attrs)
    return {}


def _unnested(attrs: dict) -> dict:
    """NGFF 0.5 nests the attributes under "ome"; earlier versions do not."""
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


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
        there is no calibration; an unknown unit is never guessed, nor a NaN, infinite, non-positive
        or absurd size passed on."""
        index = self.axes.index("X")
        unit, scale = self.units[index], self.scale[index]
        factor = SPACE_UM.get(unit or "micrometer")
        if factor is None or (not unit and scale == 1.0):
            return None, "", (f"x axis has {'unit ' + repr(unit) if unit else 'no unit'} and scale {scale:g}: "
                              "not taken as a pixel size (use --pixel-size)")
        with np.errstate(over="ignore", invalid="ignore"):
            size = float(np.float64(scale) * factor)
        if problem := pixel_size_problem(size):
            return None, "", f"x axis scale {scale:g} {unit or 'micrometer'}: {problem}; not taken as a pixel size " \
                             "(use --pixel-size)"
        return size, "ome-zarr", ""

    def frame_interval(self) -> tuple[float | None, str]:
        """(interval, unit) of the t axis when it is the only axis that moves, as for TIFF stacks."""
        moving = [a for a, n in zip(self.axes, self.array.shape) if a not in "YXC" and n > 1]
        if moving != ["T"]:
            return None, ""
        index = self.axes.index("T")
        unit, step = TIME_UNITS.get(self.units[index]), self.scale[index]
        return (step, unit) if unit and 0 < step < float("inf") else (None, "frame")


def open_group(path: Path):
    """The zarr group of an OME-Zarr folder, or of the image inside a `.zip` of one, with the zip's
    member sizes ({} for a folder), which the chunk check needs: the zip directory is parsed once."""
    import zarr

    if path.suffix.lower() != ".zip":
        return zarr.open_group(str(path), mode="r"), {}
    from zarr.storage import ZipStore

    members = zip_members(path)
    for name, size in members.items():
        if name.rsplit("/", 1)[-1] in ZARR_DOCUMENTS and size > METADATA_BYTES:
            raise ImageReadError(path, f"zip member {name!r} would inflate to {size:,} bytes: no OME-Zarr metadata "
                                       "document is that large")
    store = ZipStore(path, mode="r")
    roots = [""] + sorted({name.split("/")[0] for name in members if "/" in name})
    for root in roots:
        try:
            group = zarr.open_group(store, mode="r", path=root or None)
        except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
            continue  # no group at this level
        if "multiscales" in _unnested(dict(group.attrs)):
            return group, members
    raise ImageReadError(path, "zip holds no OME-Zarr image (no multiscales metadata at its root or in a top folder)")


def zip_members(path: Path) -> dict[str, int]:
    """Member name -> declared uncompressed size: what reading that member inflates to at most
    (Python's zip reader stops at the declared size). The member count is read from the zip's end
    record first: a directory of millions of tiny entries fits in an upload but not in memory."""
    import zipfile

    if (count := _zip_count(path)) > MAX_ZIP_MEMBERS:
        raise ImageReadError(path, f"zip holds {count:,} members, more than the {MAX_ZIP_MEMBERS:,} a zipped "
                                   "OME-Zarr image can need")
    with zipfile.ZipFile(path) as archive:
        return {info.filename: info.file_size for info in archive.infolist()}


def _zip_count(path: Path) -> int:
    """The member count a zip's end-of-central-directory record (or its zip64 record) declares; 0
    when there is none (the zip reader then says what is wrong)."""
    import struct

    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - (1 << 16) - 22))
        tail = handle.read()
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or end + 22 > len(tail):
            return 0
        count = struct.unpack_from("<H", tail, end + 10)[0]
        locator = end - 20
        if count != 0xFFFF or locator < 0 or tail[locator:locator + 4] != b"PK\x06\x07":
            return count
        handle.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
        record = handle.read(56)
        return struct.unpack_from("<Q", record, 32)[0] if record[:4] == b"PK\x06\x06" and len(record) == 56 else count


def open_image(path: Path) -> NgffImage:
    """The full-resolution array and metadata of an OME-Zarr image; ImageReadError for anything else."""
    try:
        group, members = open_group(path)
        attrs = dict(group.attrs)
    except ImageReadError:
        raise
    except Exception as exc:  # zarr raises many types for damaged stores
        raise ImageReadError(path, f"not a readable OME-Zarr store ({type(exc).__name__}: {exc})") from exc
    attrs = _unnested(attrs)
    for kind, listing in (("plate", "wells"), ("well", "images")):
        if kind in attrs:
            entries = attrs[kind].get(listing) if isinstance(attrs[kind], dict) else None
            if not isinstance(entries, list) or not entries:
                raise ImageReadError(path, f"OME-Zarr {kind} metadata lists no {listing} ({kind}.{listing} is "
                                           f"{_kind(entries)}, not a list of {listing})")
            raise ImageReadError(path, f"is an OME-Zarr {kind}, not an image: give the plate folder to `segment`, "
                                       "which segments every field")
    meta, dataset = _multiscale(path, attrs)
    try:
        array = group[dataset["path"]]
        shape = tuple(int(n) for n in array.shape)
    except Exception as exc:
        raise ImageReadError(path, f"OME-Zarr dataset {dataset['path']!r} cannot be opened "
                                   f"({type(exc).__name__}: {exc})") from exc
    if not hasattr(array, "chunks"):
        raise ImageReadError(path, f"OME-Zarr dataset {dataset['path']!r} is a group, not an array")
    names, units = _axes(meta.get("axes"), len(shape), path)
    scale = _scale(meta.get("coordinateTransformations"), len(shape), path)
    scale = tuple(a * b for a, b in zip(scale, _scale(dataset.get("coordinateTransformations"), len(shape), path)))
    version = str(meta.get("version") or attrs.get("version") or "")
    _check_zip_chunks(path, array, members)
    return NgffImage(array, names, scale, units, version, dataset["path"])


def _multiscale(path: Path, attrs: dict) -> tuple[dict, dict]:
    """The first multiscale and its first dataset, each checked to have the shape NGFF gives it."""
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise ImageReadError(path, "OME-Zarr group has no multiscales image metadata")
    meta = multiscales[0]
    if not isinstance(meta, dict):
        raise ImageReadError(path, f"OME-Zarr metadata: multiscales[0] is {_kind(meta)}, not an object")
    datasets = meta.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise ImageReadError(path, f"OME-Zarr metadata: multiscales[0].datasets is {_kind(datasets)}, "
                                   "not a list of datasets")
    dataset = datasets[0]
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or not dataset["path"]:
        raise ImageReadError(path, f"OME-Zarr metadata: datasets[0] is {_kind(dataset)}, not an object with a path")
    return meta, dataset


def _kind(value) -> str:
    """How a malformed metadata value is named in an error: its JSON type, and short values themselves."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    text = repr(value)
    return names.get(type(value), "a number") + (f" ({text})" if len(text) <= 40 and value is not None else "")


def _axes(axes, ndim: int, path: Path) -> tuple[str, tuple[str, ...]]:
    """(letters, units) of the axes; NGFF before 0.3 implies t, c, z, y, x (the last `ndim`)."""
    if axes is None:
        axes = list("tczyx"[-ndim:]) if ndim <= 5 else []
    if not isinstance(axes, list):
        raise ImageReadError(path, f"OME-Zarr metadata: axes is {_kind(axes)}, not a list")
    entries = [{"name": a} if isinstance(a, str) else a for a in axes]
    if len(entries) != ndim or not all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in entries):
        raise ImageReadError(path, f"OME-Zarr axes {str(axes)[:200]} do not match the array's {ndim} dimensions")
    letters = "".join(_AXIS_LETTERS.get(a["name"].lower(), "Q") for a in entries)
    if sorted(letters.replace("Q", "")) != sorted(set(letters.replace("Q", ""))) or "Y" not in letters \
            or "X" not in letters:
        raise ImageReadError(path, f"OME-Zarr axes {letters.lower()!r} need one y and one x axis (and no axis twice)")
    return letters, tuple(str(a.get("unit") or "").lower() for a in entries)


def _scale(transformations, ndim: int, path: Path) -> tuple[float, ...]:
    """The scale of a coordinateTransformations list (1 per axis without one); non-finite values are
    kept here and refused as pixel sizes (NgffImage.pixel_size_um), malformed entries refused."""
    if transformations is None:
        return (1.0,) * ndim
    if not isinstance(transformations, list):
        raise ImageReadError(path, f"OME-Zarr metadata: coordinateTransformations is {_kind(transformations)}, "
                                   "not a list")
    for item in transformations:
        if isinstance(item, dict) and item.get("type") == "scale":
            scale = item.get("scale")
            if not isinstance(scale, list) or len(scale) != ndim or \
                    not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale):
                raise ImageReadError(path, f"OME-Zarr metadata: scale {str(scale)[:200]} is not a list of "
                                           f"{ndim} numbers")
            return tuple(_float(v) for v in scale)
    return (1.0,) * ndim


def _float(value: int | float) -> float:
    """A JSON number as a float: an integer too large for one (JSON allows 400 digits) is infinite,
    and so refused as a pixel size like any other infinite scale."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _check_zip_chunks(path: Path, array, members: dict[str, int]) -> None:
    """Refuse a zipped array whose members (name -> declared size; none for a folder) would inflate
    beyond what its chunks can hold, before the zip store reads (and inflates) any of them whole."""
    unit = getattr(array, "shards", None) or array.chunks  # what one stored object holds
    bound = int(np.prod(unit, dtype=np.float64)) * np.dtype(array.dtype).itemsize
    bound += bound // 8 + (1 << 16)  # codec headers, incompressible data, a shard index
    prefix = f"{array.path.strip('/')}/"
    for name, size in members.items():
        if name.startswith(prefix) and name.rsplit("/", 1)[-1] not in ZARR_DOCUMENTS and size > bound:
            raise ImageReadError(path, f"zip member {name!r} would inflate to {size:,} bytes, more than a chunk of "
                                       f"{' x '.join(map(str, unit))} {array.dtype} holds ({bound:,} bytes)")


def check_reads(path: Path, array, whole: tuple[bool, ...], max_bytes: int | None = None) -> None:
    """Refuse a read, before it starts, that would touch too many chunks or decode far more than it
    reads. `whole[i]` says the read spans axis i (else it takes one index of it); `max_bytes`
    bounds the bytes decoded (the service's upload limit, so a small upload cannot inflate past it)."""
    chunks = tuple(int(c) for c in array.chunks)
    touched = int(np.prod([-(-n // c) if w else 1 for n, c, w in zip(array.shape, chunks, whole)], dtype=np.float64))
    read = int(np.prod([n if w else 1 for n, w in zip(array.shape, whole)], dtype=np.float64))
    chunk_pixels = int(np.prod(chunks, dtype=np.float64))
    decoded = touched * chunk_pixels
    described = f"{touched:,} chunks of {' x '.join(map(str, chunks))}"
    if touched > FEW_CHUNKS and chunk_pixels < MIN_CHUNK_PIXELS:
        raise ImageReadError(path, f"reading it touches {described} pixels: chunks this small take minutes to read "
                                   f"(more than {FEW_CHUNKS:,} chunks need at least {MIN_CHUNK_PIXELS:,} pixels "
                                   "each; rechunk the store)")
    if decoded > max(CHUNK_WASTE * read, SMALL_READ):
        raise ImageReadError(path, f"its chunks are far larger than the image: reading {read:,} pixels decodes "
                                   f"{described} = {decoded:,} pixels (rechunk the store)")
    check_bytes(path, decoded * np.dtype(array.dtype).itemsize, max_bytes, described)


def read_planes(path: Path, limits: ReadLimits) -> Planes:
    """The planes of an OME-Zarr image, read whole: its pixels claimed against `limits`, its bytes
    bounded by the chunks the read touches (`check_reads`)."""
    image = open_image(path)
    limits.claim(tuple(image.array.shape), None)
    check_reads(path, image.array, (True,) * len(image.array.shape), limits.max_bytes)
    try:
        data = np.asarray(image.array[...])
    except Exception as exc:  # missing or corrupt chunks
        raise ImageReadError(path, f"OME-Zarr chunks cannot be read ({type(exc).__name__}: {exc})") from exc
    pixel_size, source, warning = image.pixel_size_um()
    interval, unit = image.frame_interval()
    return Planes(data, image.axes, pixel_size, source, interval, unit, (warning,) if warning else ())


class Plane:
    """One 2-D plane of an NGFF image as a lazy array: `plane[rows, cols]` reads only those chunks."""

    def __init__(self, image: NgffImage, path: Path, channel: int | None, max_bytes: int | None = None) -> None:
        shape = dict(zip(image.axes, image.array.shape))
        extra = {a: n for a, n in zip(image.axes, image.array.shape) if a not in "YXC" and n > 1}
        if extra:
            raise ImageReadError(path, f"a single plane is needed here, but axes {extra} have more than one entry")
        count = shape.get("C", 1)
        if count > 1 and channel is None:
            raise ImageReadError(path, f"image has {count} channels; choose one, 0..{count - 1} (--channel N)")
        if channel is not None and not 0 <= channel < count:
            raise ImageReadError(path, f"--channel {channel} out of range: the image has {count} channels")
        check_reads(path, image.array, tuple(a in "YX" for a in image.axes), max_bytes)
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
    if any(n > 1 for a, n in zip(image.axes, image.array.shape) if a not in "YXC"):
        return None
    return shape["Y"], shape["X"]
