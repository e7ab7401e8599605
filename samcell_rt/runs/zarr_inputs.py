"""OME-Zarr stores as run inputs: images, and HCS plates as one input per well field.

A plate (NGFF `plate` metadata) expands to its fields `<plate>/<row>/<column>/<field>` in the
plate's own well order; a well group to its fields. Each field's well comes from the plate's
layout (its rows and columns lists), never from a name, and its output stem is
`<plate>_<well>_f<field>` (plate folder name without `.ome.zarr`), unique across fields and plates.
Fields are read lazily by chunk by the runtime; this module reads only metadata.
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
        return [field for well in _plate_wells(path) for field in well_fields(well)]
    if kind == "well":
        return well_fields(path)
    return [path]


def _plate_wells(plate: Path) -> list[Path]:
    return _inside(plate, (ngff_attrs(plate)["plate"].get("wells") or []))


def well_fields(well: Path) -> list[Path]:
    """The field images a well lists (a listed field that is missing fails when it is read)."""
    return _inside(well, (ngff_attrs(well).get("well") or {}).get("images") or [])


def _inside(group: Path, entries: list) -> list[Path]:
    """The listed member paths, only those inside `group`: metadata naming `..` or an absolute path
    cannot send a run (or --zarr-labels' writes) outside the store."""
    paths = [str(e["path"]) for e in entries if isinstance(e, dict) and e.get("path")]
    return [group / p for p in paths if not Path(p).is_absolute() and ".." not in Path(p).parts]


@functools.lru_cache(maxsize=4096)
def field_of(path: str) -> tuple[str, tuple[int, int], str] | None:
    """(plate name, (row index, column number), field name) of an HCS field path, else None.
    The well's place comes from the plate's rows/columns metadata (rowIndex, columnIndex)."""
    field = Path(path)
    plate = field.parent.parent.parent
    if not field.is_dir() or group_kind(plate) != "plate":
        return None
    meta = ngff_attrs(plate)["plate"]
    well_path = f"{field.parent.parent.name}/{field.parent.name}"
    for well in meta.get("wells") or []:
        if isinstance(well, dict) and well.get("path") == well_path:
            position = _position(meta, well)
            return (store_name(plate), position, field.name) if position else None
    return None


def _position(meta: dict, well: dict) -> tuple[int, int] | None:
    """(row index, 1-based column) from the plate layout: row letters and column numbers by name,
    else by index."""
    try:
        row_name = str(meta["rows"][well["rowIndex"]]["name"])
        column_name = str(meta["columns"][well["columnIndex"]]["name"])
    except (KeyError, IndexError, TypeError):
        return None
    row = ROW_LETTERS.index(row_name.upper()) if len(row_name) == 1 and row_name.upper() in ROW_LETTERS \
        else int(well["rowIndex"])
    column = int(column_name) if column_name.isdigit() else int(well["columnIndex"]) + 1
    return row, column


def well_id(position: tuple[int, int]) -> str:
    """"A01"-style id of a (row index, column) position (rows beyond P keep their number)."""
    row, column = position
    return f"{ROW_LETTERS[row] if row < len(ROW_LETTERS) else f'R{row + 1}'}{column:02d}"


def store_name(path: Path) -> str:
    """A store's name without `.ome.zarr` / `.zarr` / `.zarr.zip`."""
    return _STORE_SUFFIX.sub("", path.name) or path.name


def input_stem(path: Path | str) -> str:
    """The output stem of an input: `<plate>_<well>_f<field>` for plate fields, the store name for
    OME-Zarr images, the file stem otherwise."""
    path = Path(path)
    if _STORE_SUFFIX.search(path.name):
        return store_name(path)
    field = field_of(str(path))
    return f"{field[0]}_{well_id(field[1])}_f{field[2]}" if field else path.stem


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
    """An OME-Zarr folder (image, plate or well) among a folder's entries."""
    return path.is_dir() and is_ome_zarr(path)
