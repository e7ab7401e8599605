"""OME-Zarr stores as run inputs: images, and HCS plates as one input per well field.

A plate (NGFF `plate` metadata) expands to its fields `<plate>/<row>/<column>/<field>` in the
plate's own well order; a well group to its fields. Each field's well comes from the plate's
layout (its rows and columns lists), never from a name, and its output stem is
`<plate>_<well>_f<field>` (plate folder name without `.ome.zarr`), unique across fields and plates.
Fields are read lazily by chunk by the runtime; this module reads only metadata.
Nothing listed is left out silently: a plate or well whose list is malformed stays one input, and
a listed well whose folder is gone or holds no well metadata is an input too (stem
`<plate>_<well>`), so the run reports each as a failed row when it reads them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..runtime.ome_zarr import METADATA_FILES, group_kind, is_ome_zarr, ngff_attrs
from .patterns import ROW_LETTERS

_STORE_SUFFIX = re.compile(r"(?i)(\.ome)?\.zarr(\.zip)?$")


def expand_store(path: Path) -> list[Path]:
    """The inputs in an OME-Zarr folder: the image itself, or every field of a plate or well."""
    kind = group_kind(path)
    if kind == "plate":
        wells = _listed(path, "plate", "wells")
        return [field for well in wells for field in (well_fields(well) if group_kind(well) == "well" else [well])] \
            if wells else [path]
    if kind == "well":
        return well_fields(path) or [path]
    return [path]


def _listed(group: Path, kind: str, key: str) -> list[Path]:
    """The member paths a plate's `wells` or a well's `images` list ([] when it is no list or empty:
    the group then stays an input, and its read says what is wrong)."""
    meta = ngff_attrs(group).get(kind)
    entries = meta.get(key) if isinstance(meta, dict) else None
    return _inside(group, entries) if isinstance(entries, list) else []


def well_fields(well: Path) -> list[Path]:
    """The field images a well lists (a listed field that is missing fails when it is read)."""
    return _listed(well, "well", "images")


def _inside(group: Path, entries: list) -> list[Path]:
    """The listed member paths, only those inside `group`: metadata naming `..` or an absolute path
    cannot send a run (or --zarr-labels' writes) outside the store."""
    paths = [str(e["path"]) for e in entries if isinstance(e, dict) and e.get("path")]
    return [group / p for p in paths if not Path(p).is_absolute() and ".." not in Path(p).parts]


@functools.lru_cache(maxsize=4096)
def field_of(path: str) -> tuple[str, tuple[int, int] | None, str, str] | None:
    """(plate name, (row index, column number), field name, well path) of an HCS field path ("" as
    the field name for a well path), else None. The well's place comes from the plate's rows/columns
    metadata (rowIndex, columnIndex); None when that layout cannot place it."""
    field = Path(path)
    if group_kind(field.parent.parent.parent) == "plate":  # a field, present or not
        plate, well_path, name = field.parent.parent.parent, f"{field.parent.parent.name}/{field.parent.name}", field.name
    elif group_kind(field.parent.parent) == "plate":  # a well listed without fields
        plate, well_path, name = field.parent.parent, f"{field.parent.name}/{field.name}", ""
    else:
        return None
    meta = ngff_attrs(plate)["plate"]
    wells = meta.get("wells")
    for well in wells if isinstance(wells, list) else []:
        if isinstance(well, dict) and well.get("path") == well_path:
            return store_name(plate), _position(meta, well), name, well_path
    return None


def _position(meta: dict, well: dict) -> tuple[int, int] | None:
    """(row index, 1-based column) from the plate layout: row letters and column numbers by name,
    else by index; None when the layout does not place the well."""
    indices = well.get("rowIndex"), well.get("columnIndex")
    rows, columns = meta.get("rows"), meta.get("columns")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices) or \
            not isinstance(rows, list) or not isinstance(columns, list) or \
            indices[0] >= len(rows) or indices[1] >= len(columns):
        return None
    row_name, column_name = (str(entry.get("name", "")) if isinstance(entry, dict) else ""
                             for entry in (rows[indices[0]], columns[indices[1]]))
    row = ROW_LETTERS.index(row_name.upper()) if len(row_name) == 1 and row_name.upper() in ROW_LETTERS \
        else indices[0]
    try:
        column = int(column_name) if column_name.isdecimal() else indices[1] + 1
    except ValueError:  # decimal digits int() refuses
        column = indices[1] + 1
    return row, column


def well_id(position: tuple[int, int]) -> str:
    """"A01"-style id of a (row index, column) position (rows beyond P keep their number)."""
    row, column = position
    return f"{ROW_LETTERS[row] if row < len(ROW_LETTERS) else f'R{row + 1}'}{column:02d}"


def store_name(path: Path) -> str:
    """A store's name without `.ome.zarr` / `.zarr` / `.zarr.zip`."""
    return _STORE_SUFFIX.sub("", path.name) or path.name


def input_stem(path: Path | str) -> str:
    """The output stem of an input: `<plate>_<well>_f<field>` for plate fields (`<plate>_<well>` for
    a listed well that holds no fields), the store name for OME-Zarr images, the file stem otherwise."""
    path = Path(path)
    if _STORE_SUFFIX.search(path.name):
        return store_name(path)
    field = field_of(str(path))
    if not field:
        return path.stem
    plate, position, name, well_path = field
    well = well_id(position) if position else well_path.replace("/", "")  # unplaced: its folder names
    return f"{plate}_{well}" + (f"_f{name}" if name else "")


def layout_well(path: Path | str) -> tuple[int, int] | None:
    """(row index, column) of a plate field from the plate layout; None for other inputs."""
    field = field_of(str(path))
    return field[1] if field else None


def source_signature(path: Path) -> dict:
    """Size and time of what defines an input: the file, or an OME-Zarr image's metadata files (so
    labels written into its `labels/` group do not make it look changed)."""
    if not path.is_dir():
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    files = [path / name for name in METADATA_FILES if (path / name).exists()]
    return {str(f.relative_to(path)): [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def is_store(path: Path) -> bool:
    """An OME-Zarr folder (image, plate or well), or a folder named like one (`x.zarr`): one without
    NGFF metadata becomes an input that fails with a row saying so, never silently left out."""
    return path.is_dir() and (is_ome_zarr(path) or path.suffix.lower() == ".zarr")
