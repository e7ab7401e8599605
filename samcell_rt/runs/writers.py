"""Every output samcell-rt writes, in one place for the CLI, the GUI and the service.

The OUTPUTS table names each kind of per-file output and its file-name suffix; folder runs use it
to write, and to recognise their own outputs so they are never read back as inputs. Labels are
uint16 (uint32 above 65,535 cells) TIFFs, a stack for multi-frame inputs; overlays outline cells
in yellow; the cells CSV has one row per cell and frame; summary rows one per frame. Files are
written atomically (temporary file + rename).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..runtime.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from ..runtime.io import ImageStack
from ..runtime.limits import pixel_size_problem
from ..runtime.measure import image_metrics, known_pixel_size, with_physical_units
from ..runtime.segmenter import Result

OUTLINE_RGB = (255, 255, 0)


@dataclass(frozen=True)
class OutputKind:
    """One kind of per-input output: the file `<stem><suffix>` (overlays of stacks: `<stem>_fNNNN<suffix>`),
    and, for the kinds that are one document per input, how to render it (results, pixel size in um ->
    bytes) and its media type: the folder writer, the service's `?format=` and the GUI's downloads
    all read this one table."""

    name: str
    suffix: str
    description: str
    media_type: str = ""
    render: Callable[[list[Result], float | None], bytes] | None = None  # None: written per frame (overlays)
    option: str = ""  # the `segment` flag that asks for an optional kind


OUTPUTS = (
    OutputKind("labels", "_labels.tif", "labels, uint16/uint32 TIFF (a stack for multi-frame inputs)", "image/tiff",
               lambda results, um: labels_tiff_bytes(label_image(results), um)),
    OutputKind("overlay", "_overlay.png", "the image with cell outlines (one per frame)"),
    OutputKind("cells", "_cells.csv", "one row per cell and frame", "text/csv",
               lambda results, um: cells_csv(results, um).encode()),
    OutputKind("distance", "_distance.tif", "float32 distance maps (with --save-distance)", "image/tiff",
               lambda results, um: float_tiff_bytes(np.stack([r.distance for r in results])), "--save-distance"),
    OutputKind("rois", "_rois.zip", "one ImageJ polygon ROI per cell, for Fiji's ROI Manager (with --rois)",
               "application/zip", lambda results, um: rois_zip(results), "--rois"),
    OutputKind("geojson", ".geojson", "one QuPath detection per cell, pixel coordinates (with --geojson)",
               "application/geo+json", lambda results, um: json.dumps(geojson(results, um)).encode(), "--geojson"),
)
KINDS = {kind.name: kind for kind in OUTPUTS}
SUMMARY = "summary.csv"
SUMMARY_FIELDS = ("file", "frame", "cells", "mean_area_px", "median_area_px", "confluency", "mean_neighbours",
                  "mean_area_um2", "diameter_px", "scale", "pixel_size_um", "pixel_size_source", "time", "time_unit",
                  "seconds", "status", "warning", "error")
# per-run outputs, derived from summary.csv after each run (and by `samcell-rt report`)
RUN_JSON = "run.json"
REPORT = "report.html"
TIMELINE_SUFFIXES = ("_timeline.csv", "_timeline.png")
PLATE_METRICS = ("confluency", "cells")
PLATE_TABLE = "plate_wells.csv"
RUN_OUTPUTS = (RUN_JSON, REPORT, PLATE_TABLE, *(f"plate_{metric}.png" for metric in PLATE_METRICS))


def output_name(stem: str, kind: str, frame: int | None = None) -> str:
    """File name of one output; `frame` for the per-frame overlays of a stack."""
    suffix = KINDS[kind].suffix
    return f"{stem}_f{frame:04d}{suffix}" if frame is not None else f"{stem}{suffix}"


def stack_of_frame_stem(stem: str) -> str | None:
    """The stem of a stack whose per-frame overlays would take `stem`'s overlay name (`a` for `a_f0003`:
    a stack `a.tif` writes `a_f0003_overlay.png`, as would a file `a_f0003.tif`), else None."""
    match = re.fullmatch(r"(.+)_f\d{4,}", stem)
    return match.group(1) if match else None


def is_output_name(name: str) -> bool:
    """True for names samcell-rt writes into an output folder (never inputs there)."""
    return (name == SUMMARY or name in RUN_OUTPUTS or name.endswith(TIMELINE_SUFFIXES)
            or any(name.endswith(kind.suffix) for kind in OUTPUTS))


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


def cell_shapes(labels: np.ndarray) -> dict:
    """Each cell as a shapely Polygon (MultiPolygon for a cell in pieces) traced along its pixels'
    edges: pixel (x, y) spans x..x+1, y..y+1, the convention of ImageJ's wand and QuPath, so a
    shape's area is exactly its cell's pixel count and holes stay holes. Built as the union of the
    cell's row runs by GEOS, whose output is valid by construction (no self-touching rings: where a
    cell meets itself at a corner, a hole touches the shell or the pieces touch, as OGC allows)."""
    import shapely
    from scipy import ndimage

    shapes = {}
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        steps = np.diff(np.pad(labels[box] == index, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        rows, starts = np.nonzero(steps == 1)  # row-major: run starts and ends pair up in order
        ends = np.nonzero(steps == -1)[1]
        y, x = rows + box[0].start, box[1].start
        runs = shapely.box(starts + x, y, ends + x, y + 1)
        shapes[index] = shapely.simplify(shapely.union_all(runs), 0)  # drops the run ends' collinear vertices
    return shapes


def _rings(shape) -> list[np.ndarray]:
    """Every ring of a (Multi)Polygon, exteriors and holes, as (N, 2) vertices without the closing repeat."""
    polygons = getattr(shape, "geoms", [shape])
    return [np.asarray(ring.coords)[:-1] for polygon in polygons for ring in (polygon.exterior, *polygon.interiors)]


def imagej_roi(shape, name: str, frame: int | None = None):
    """One cell as an ImageJ ROI: a traced polygon (integer pixel-edge vertices, what the wand makes),
    or, for a cell with a hole or in pieces, a composite ROI whose rings ImageJ fills even-odd, so its
    area in ImageJ equals the cell's pixel count."""
    from roifile import ROI_TYPE, ImagejRoi

    rings = _rings(shape)
    if len(rings) == 1:
        roi = ImagejRoi.frompoints(rings[0].astype(np.int32), name=name, t=frame)
        roi.roitype = ROI_TYPE.TRACED
        return roi
    path = [value for ring in rings for value in
            (0, *ring[0], *(v for point in ring[1:] for v in (1, *point)), 4)]  # MOVETO, LINETO..., CLOSE
    left, top, right, bottom = (int(v) for v in shape.bounds)
    roi = ImagejRoi(roitype=ROI_TYPE.RECT, name=name, left=left, top=top, right=right, bottom=bottom,
                    shape_roi_size=len(path), multi_coordinates=np.asarray(path, np.float32))
    if frame is not None:
        roi.t_position = frame + 1
    return roi


def rois_zip(results: list[Result]) -> bytes:
    """Fiji ROI Manager zip: one ROI per cell (see `imagej_roi`), named by cell id (`f<frame>-<id>`
    in stacks, with the frame as the ROI's position)."""
    import zipfile

    stack = len(results) > 1
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for frame, result in enumerate(results):
            for cell, shape in cell_shapes(result.labels).items():
                name = f"f{frame:04d}-{cell:05d}" if stack else f"{cell:05d}"
                archive.writestr(f"{name}.roi", imagej_roi(shape, name, frame if stack else None).tobytes())
    return buffer.getvalue()


def geojson(results: list[Result], pixel_size_um: float | None = None) -> dict:
    """QuPath-importable FeatureCollection: one detection per cell (Polygon with its holes as
    interior rings, MultiPolygon for a cell in pieces; pixel-edge coordinates) with the cell's
    measurements; `frame` says which frame of a stack it belongs to."""
    import shapely

    features = []
    for frame, result in enumerate(results):
        table = with_physical_units(result.cells, pixel_size_um)
        rows = {int(cell): index for index, cell in enumerate(table["id"])}
        for cell, shape in cell_shapes(result.labels).items():
            measurements = {name: _json_number(values[rows[cell]]) for name, values in table.items() if name != "id"}
            features.append({"type": "Feature", "id": f"{frame}-{cell}",
                             "geometry": json.loads(shapely.to_geojson(shape)),
                             "properties": {"objectType": "detection", "name": f"cell {cell}", "id": cell,
                                            "frame": frame, "classification": {"name": "Cell"},
                                            "measurements": measurements}})
    return {"type": "FeatureCollection", "features": features}


def _json_number(value) -> float | int | None:
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return int(value)
    return None if np.isnan(value) else round(float(value), 6)


def fmt(value: float | None) -> str:
    """Numbers in CSV files: 6 significant digits, empty for unknown."""
    return "" if value is None else f"{value:.6g}"


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return str(int(value))
    return "" if np.isnan(value) else fmt(float(value))


def cells_csv(results: list[Result], pixel_size_um: float | None) -> str:
    """One row per cell and frame (results in frame order); micrometre columns when calibrated."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for index, result in enumerate(results):
        table = with_physical_units(result.cells, pixel_size_um)
        if index == 0:
            writer.writerow(["frame", *table])
        for values in zip(*table.values()):
            writer.writerow([index, *(_cell(v) for v in values)])
    return buffer.getvalue()


def read_cells_csv(path: Path) -> dict[str, np.ndarray]:
    """A cells CSV written by `cells_csv` as float columns keyed by name (empty values as NaN)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {name: np.array([float(r[name]) if r[name] != "" else np.nan for r in rows]) for name in rows[0]}


def summary_row(path: Path, frame: int, *, metrics: dict | None = None, seconds: float = 0.0, error: str | None = None,
                pixel_size_um: float | None = None, pixel_size_source: str = "", time: float | None = None,
                time_unit: str = "", warnings: list[str] | None = None, diameter_px: float | None = None,
                scale: float | None = None) -> dict:
    """One summary.csv row: a frame's numbers (and its time in a time-lapse stack), or the reason it failed.
    `diameter_px` is the estimated cell diameter, `scale` the resize the model saw the image at. A
    pixel size that is no usable calibration (NaN, inf, 1e300) is left out and said in the row's warning."""
    problem = None if pixel_size_um is None else pixel_size_problem(pixel_size_um)
    if problem:
        warnings = [*(warnings or []), f"pixel size from {pixel_size_source or 'the input'} ignored ({problem})"]
        pixel_size_um, pixel_size_source = None, ""
    row = {"file": str(path), "frame": frame, "status": "ok" if error is None else "failed", "error": error or "",
           "diameter_px": fmt(diameter_px), "scale": fmt(scale),
           "pixel_size_um": fmt(pixel_size_um) if pixel_size_um else "", "pixel_size_source": pixel_size_source,
           "time": fmt(time), "time_unit": time_unit if time is not None else "",
           "warning": "; ".join(warnings or [])}
    for name in ("cells", "mean_area_px", "median_area_px", "confluency", "mean_neighbours", "mean_area_um2"):
        value = (metrics or {}).get(name)
        row[name] = "" if value is None else value if name == "cells" else fmt(value)
    row["seconds"] = fmt(seconds) if metrics is not None else ""
    return row


def write_summary(path: Path, rows: list[dict]) -> None:
    """Write the summary CSV atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text_atomic(path, buffer.getvalue())
    except OSError as exc:  # a full disk at the very end of a run: say so, in one line
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None


def write_file_outputs(out: Path, stem: str, results: list[Result], pixel_size_um: float | None,
                       extras: tuple[str, ...] = ()) -> list[str]:
    """Labels, overlays and cells CSV of one input's frames, plus the optional `extras` (distance,
    rois, geojson); returns the names written."""
    def document(kind: str) -> str:
        name = output_name(stem, kind)
        write_bytes_atomic(out / name, KINDS[kind].render(results, pixel_size_um))
        return name

    written = [document("labels")]
    stack = len(results) > 1
    for index, result in enumerate(results):
        name = output_name(stem, "overlay", index if stack else None)
        write_png(out / name, overlay_image(result.image_u8, result.labels))
        written.append(name)
    return written + [document(kind) for kind in ("cells", *extras)]


def frame_rows(stack: ImageStack, results: list[Result], extra_seconds: float = 0.0) -> list[dict]:
    """Summary rows of one input's finished frames; `extra_seconds` (reading) is shared among them."""
    share, size = extra_seconds / len(results), stack.pixel_size_um
    return [summary_row(stack.path, index, metrics=image_metrics(r.labels, r.cells, size),
                        seconds=share + sum(r.timings.values()), pixel_size_um=size,
                        pixel_size_source=stack.pixel_size_source, time=stack.frame_time(index), time_unit=stack.time_unit,
                        warnings=r.warnings, diameter_px=r.diameter, scale=r.scale)
            for index, r in enumerate(results)]


def write_training_pair(folder: str | Path, name: str, image: np.ndarray, labels: np.ndarray,
                        rgb: bool = False) -> tuple[Path, Path]:
    """`<name>.tif` + `<name>_labels.tif` in `folder`, the pair layout `samcell-rt train --data` reads
    (corrected labels from a viewer, say). An existing pair is never overwritten: `<name>-2`, ... instead."""
    import tifffile

    folder, stem = Path(folder), "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"
    if (image.shape[:2] if rgb else image.shape[-2:]) != labels.shape[-2:]:
        raise InputError(f"labels {labels.shape} do not match the image {image.shape}")
    folder.mkdir(parents=True, exist_ok=True)
    candidate, number = stem, 1
    while (folder / f"{candidate}.tif").exists() or (folder / output_name(candidate, "labels")).exists():
        number += 1
        candidate = f"{stem}-{number}"
    image_path, labels_path = folder / f"{candidate}.tif", folder / output_name(candidate, "labels")
    with atomic_path(image_path) as tmp:
        tifffile.imwrite(tmp, np.asarray(image), photometric="rgb" if rgb else "minisblack")
    write_labels(labels_path, np.asarray(labels).astype(np.int64))
    return image_path, labels_path
