"""The lab's formats: Fiji ROI Manager zips, QuPath GeoJSON and the per-cell CSV table.

Cell shapes are traced along pixel edges (ImageJ's and QuPath's convention), so a shape's area is
its cell's pixel count; the cells CSV has one row per cell and frame, micrometre columns when the
pixel size is known.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..runtime.measure import with_physical_units
from ..runtime.segmenter import Result
from .summary import fmt


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

