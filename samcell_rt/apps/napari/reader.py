"""Open samcell-rt's `<stem>_labels.tif` in napari, with `<stem>_cells.csv` (beside it) as the layer's
per-cell features and the ImageJ calibration as its scale."""

from __future__ import annotations

from pathlib import Path

from ...runs.lab_formats import read_cells_csv
from ...runs.outputs import KINDS
from ...runtime.io import read_image


def get_reader(path: str | list[str]):
    """napari reader hook: a function for samcell-rt label files, None for anything else."""
    if isinstance(path, list) or not str(path).endswith(KINDS["labels"].suffix):
        return None
    return read_labels


def read_labels(path: str) -> list[tuple]:
    """[(labels, layer options, "labels")]: the labels, their cells table and calibration."""
    path = Path(path)
    stack = read_image(path)
    labels = stack.frames if stack.is_stack else stack.frames[0]
    options: dict = {"name": path.name[: -len(KINDS["labels"].suffix)] + " cells"}
    table = path.with_name(path.name[: -len(KINDS["labels"].suffix)] + KINDS["cells"].suffix)
    if table.exists():
        options["features"] = read_cells_csv(table)
    if stack.pixel_size_um:
        options["scale"] = (1.0,) * (labels.ndim - 2) + (stack.pixel_size_um, stack.pixel_size_um)
    return [(labels, options, "labels")]
