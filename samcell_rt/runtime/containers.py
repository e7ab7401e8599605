"""Microscope container files (extra `formats`): Zeiss CZI, Nikon ND2 and Leica LIF.

Each reader hands io.py what the TIFF reader does, a `Planes` (planes.py): an array, its axes in
io's letters (T, Z, C, S = colour samples, Y, X; other letters for scenes, positions, tiles or any
other axis), the pixel size from the file's own metadata and the frame interval. Everything along
the non-Y/X, non-channel axes becomes a frame, in file order, so scenes, positions, time and Z are
frames as for TIFF stacks; `scene` keeps one CZI scene, LIF image or ND2 position. A file whose
scenes (CZI) or images (LIF) differ in size or pixel size is refused with the sizes named and
`--scene` suggested: frames of one input share one size and one calibration. Readers (chosen by
install weight, licence and read speed; see README "Formats"): pylibCZIrw (LGPL-3, the maker's
libCZI), nd2 (BSD-3), liffile (BSD-3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageReadError
from .planes import Planes, ReadLimits

CONTAINER_SUFFIXES = {".czi": ("pylibCZIrw", "czi"), ".nd2": ("nd2", "nd2"), ".lif": ("liffile", "lif")}
_METRE_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0, "nm": 1e-3}


def read_container(path: Path, limits: ReadLimits, scene: int | None = None) -> Planes:
    """The planes of a CZI, ND2 or LIF file; the header's sizes are claimed against `limits` (one byte
    a sample at least) before any plane is read."""
    module, name = CONTAINER_SUFFIXES[path.suffix.lower()]
    try:
        __import__(module)
    except ImportError as exc:
        raise ImageReadError(path, f"reading {name.upper()} files needs the 'formats' extra: "
                                   f"pip install \"samcell-rt[formats]\" ({exc.name} missing)") from exc
    reader = {"czi": _read_czi, "nd2": _read_nd2, "lif": _read_lif}[name]
    try:
        return reader(path, limits.claim, scene)
    except ImageReadError:
        raise
    except Exception as exc:  # each reader raises its own types for corrupt or truncated input
        raise ImageReadError(path, f"not a readable {name.upper()} file ({type(exc).__name__}: {exc})") from exc


def _planes(data: np.ndarray, names: list[str], sizes: list[int], pixel_size: float | None, reader: str,
            interval_s: float | None = None) -> Planes:
    """`data` with io's axes letters for its named axes (T, C, S, Y, X kept; every other axis a distinct
    frame letter), the pixel size (`reader` its source) and the timing: a time series when T is the
    only other axis with several entries (`interval_s` apart; unknown: counted in frames)."""
    spare = iter("QRUVWIJKLMNO")
    letters = "".join(n if n in "TCSYX" else next(spare) for n in names)
    moving = [n for n, size in zip(names, sizes) if n not in "YXCS" and size > 1]
    interval, unit = (None, "") if moving != ["T"] else (interval_s, "s") if interval_s else (None, "frame")
    return Planes(data, letters, pixel_size, reader if pixel_size else "", interval, unit)


def _pick(path: Path, items: list, scene: int | None, what: str) -> list:
    """All items, or the one `scene` names (its range checked)."""
    if scene is None:
        return items
    if not 0 <= scene < len(items):
        raise ImageReadError(path, f"--scene {scene} out of range: the file has {len(items)} {what} (0..{len(items) - 1})")
    return [items[scene]]


def _alike(path: Path, values: list, what: str, differ: str) -> None:
    """Refuse frames of one input whose size or calibration differ; name them and the way out."""
    if len(set(values)) > 1:
        listed = ", ".join(map(str, values))
        raise ImageReadError(path, f"its {len(values)} {what} differ in {differ} ({listed}); frames of one input "
                                   f"share one: choose one with --scene N (0..{len(values) - 1})")


# --- CZI (pylibCZIrw) -------------------------------------------------------------------------

def _read_czi(path: Path, check, scene: int | None) -> Planes:
    from pylibCZIrw import czi as pyczi

    with pyczi.open_czi(str(path)) as czi:
        box = czi.total_bounding_box
        rects = czi.scenes_bounding_rectangle
        if rects:
            scenes = _pick(path, list(rects), scene, "scenes")
            _alike(path, [f"{rects[s].h}x{rects[s].w}" for s in scenes], "scenes", "size")
            height, width = rects[scenes[0]].h, rects[scenes[0]].w
        else:
            scenes, (height, width) = _pick(path, [None], scene, "scenes"), (box["Y"][1] - box["Y"][0],
                                                                               box["X"][1] - box["X"][0])
        dims = {d: r for d, r in box.items() if d not in "XYC" and r[1] - r[0] > 1}
        channels = box.get("C", (0, 1))
        rgb = any("Bgr" in t for t in czi.pixel_types.values())
        names = ["scene", *dims, "C", "Y", "X", "S"]
        sizes = [len(scenes), *(r[1] - r[0] for r in dims.values()), channels[1] - channels[0], height, width,
                 3 if rgb else 1]
        check(tuple(sizes))
        planes = []
        for number in scenes:
            for index in np.ndindex(*(r[1] - r[0] for r in dims.values())):
                plane = {d: r[0] + i for (d, r), i in zip(dims.items(), index)}
                for c in range(*channels):
                    pixels = czi.read(plane={**plane, "C": c}, scene=number)
                    planes.append(pixels[..., ::-1] if rgb else pixels)  # libCZI gives BGR
        data = np.stack(planes).reshape(sizes)
        pixel_size = czi_pixel_size(czi.metadata)
    return _planes(data, names, sizes, pixel_size, "czi")  # ZEN keeps frame times in an attachment libCZI does not read


def czi_pixel_size(metadata: dict) -> float | None:
    """The X distance of ZEN's Scaling metadata (metres) in micrometres."""
    try:
        items = metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError):
        return None
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and item.get("@Id") == "X":
            try:
                value = float(item.get("Value")) * 1e6
            except (TypeError, ValueError):
                return None
            return value if value > 0 else None
    return None


# --- ND2 (nd2) --------------------------------------------------------------------------------

def _read_nd2(path: Path, check, scene: int | None) -> Planes:
    import nd2

    with nd2.ND2File(path) as nd2_file:
        return nd2_planes(nd2_file, check, scene, path)


def nd2_planes(nd2_file, check=lambda shape: None, scene: int | None = None, path: Path = Path("nd2")) -> Planes:
    """The mapping from an open `nd2.ND2File`: its sizes (T, P, Z, C, Y, X, S), voxel size and time
    loop; `scene` keeps one position (P)."""
    names, sizes = list(nd2_file.sizes), [int(n) for n in nd2_file.sizes.values()]
    check(tuple(sizes))
    data = np.asarray(nd2_file.asarray())
    if scene is not None:
        axis = names.index("P") if "P" in names else None
        if axis is None:
            _pick(path, [None], scene, "positions")
        else:
            data = np.take(data, _pick(path, list(range(sizes[axis])), scene, "positions"), axis=axis)
            sizes[axis] = 1
    voxel = nd2_file.voxel_size()
    calibrated = voxel is not None and voxel.x > 0 and _nd2_calibrated(nd2_file)
    pixel_size = float(voxel.x) if calibrated else None
    return _planes(data, names, sizes, pixel_size, "nd2", _nd2_interval_s(nd2_file.experiment or []))


def _nd2_interval_s(loops: list) -> float | None:
    """The time loop's measured mean period (its set period if none was measured), in seconds."""
    for loop in loops:
        if getattr(loop, "type", "") == "TimeLoop":
            params = loop.parameters
            period_ms = (params.periodDiff.avg if params.periodDiff else 0) or params.periodMs
            return period_ms / 1000 if period_ms and period_ms > 0 else None
    return None


def _nd2_calibrated(nd2_file) -> bool:
    """NIS Elements marks an uncalibrated image (1 px = 1 unit) in its volume metadata."""
    try:
        return bool(nd2_file.metadata.channels[0].volume.axesCalibrated[0])
    except (AttributeError, IndexError, TypeError):
        return True  # no such record: trust the voxel size nd2 reports


# --- LIF (liffile) ----------------------------------------------------------------------------

def _read_lif(path: Path, check, scene: int | None) -> Planes:
    import liffile

    with liffile.LifFile(path) as lif:
        images = [image for image in lif.images if "X" in image.sizes and "Y" in image.sizes]
        if not images:
            raise ImageReadError(path, "LIF holds no image with X and Y axes")
        images = _pick(path, images, scene, "images")
        _alike(path, [" x ".join(f"{a}{n}" for a, n in i.sizes.items()) for i in images], "images", "size")
        steps = [_lif_step(image, "X", _METRE_UM) for image in images]
        _alike(path, [None if step is None else round(step, 6) for step in steps], "images", "pixel size (um)")
        return lif_planes(images, check)


def lif_planes(images: list, check=lambda shape: None) -> Planes:
    """The mapping from liffile images of one layout: each image's frames in turn (image-major);
    tiles (M) and any other axis become frames too."""
    first = images[0]
    names, sizes = ["image", *first.sizes], [len(images), *(int(n) for n in first.sizes.values())]
    check(tuple(sizes))
    data = np.stack([np.asarray(image.asarray()) for image in images])
    pixel_size = _lif_step(first, "X", _METRE_UM)
    return _planes(data, names, sizes, pixel_size, "lif", _lif_step(first, "T", {"s": 1.0}))


def _lif_step(image, label: str, units: dict[str, float]) -> float | None:
    """The step between pixels (or frames) of one axis from LAS X's DimensionDescription, converted
    by `units` (None when the axis or its unit is missing)."""
    ids = {"X": "1", "T": "4"}
    for dim in image.xml_element.findall("./Data/Image/ImageDescription/Dimensions/DimensionDescription"):
        if dim.attrib.get("DimID") == ids[label]:
            count, length, unit = int(dim.attrib["NumberOfElements"]), float(dim.attrib["Length"]), dim.attrib.get("Unit")
            if count > 1 and length > 0 and unit in units:
                return length / (count - 1) * units[unit]
    return None
