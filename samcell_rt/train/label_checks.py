"""Guard rails for user annotations: refuse what is not an instance-label image before training on it.

A wrong kind of file trains a useless model without any error: an RGB colour rendering of labels
becomes a gray ramp, an intensity image cast to integers becomes noise "cells", and a semantic
mask (1 = cell everywhere) teaches the model that touching cells are one. Each is recognised
from the file as stored (before any conversion) and refused with a message naming the file:
- colour: three or four channels that are not all equal;
- intensity: fractional values, or many distinct values each scattered over many separate
  regions (smooth images repeat one grey level all over; a label id is one patch);
- semantic: few values, one of which covers several separate regions of cell size.
Automatic instance labels with the odd split cell pass: only a clear majority of split ids fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, SamcellError
from ..runtime import MAX_PIXELS

MANY_VALUES = 64  # more distinct values than this, scattered: an intensity image
SCATTER = 2.0  # regions per value above which values are scattered
SPLIT = 1.5  # sizeable regions per id above which one id covers several cells
REGION_PX = 10  # regions smaller than this are specks, not cells
MIN_CELLS = 10  # fewer annotated cells than this in all training images: nothing to learn from


def read_raw_labels(path: Path) -> np.ndarray:
    """A label file as stored: channels kept, dtype kept (Cellpose `_seg.npy`: its masks)."""
    from .annotations import CELLPOSE_SEG, read_labels

    if path.name.endswith(CELLPOSE_SEG):
        return read_labels(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
                if np.prod(shape, dtype=np.float64) > MAX_PIXELS:  # a lying header is refused, not allocated
                    raise InputError(f"{path}: header claims {' x '.join(map(str, shape))} pixels, more than the "
                                     f"{MAX_PIXELS:,} a label image may have")
                return np.squeeze(tif.asarray())
        import cv2

        data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except SamcellError:
        raise
    except Exception as exc:  # tifffile and OpenCV raise many types for damaged files
        raise InputError(f"{path}: not a readable label image ({type(exc).__name__}: {exc})") from exc
    if data is None:
        raise InputError(f"{path}: not a readable label image")
    return data


def check_label_image(labels: np.ndarray, name: str | Path) -> None:
    """Raise InputError naming `name` unless `labels` is an instance-label image (one id per cell)."""
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        if not all(np.array_equal(labels[..., 0], labels[..., c]) for c in range(1, 3)):
            raise InputError(f"{name}: a colour (RGB) label image; save labels as a single-channel integer image "
                             "with one id per cell (napari's 'Save as training pair' does)")
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise InputError(f"{name}: labels must be one 2-D image, got shape {labels.shape}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise InputError(f"{name}: fractional values: an intensity image, not labels (one integer id per cell)")
    values = np.unique(labels)
    values = values[values != 0]
    if not values.size:
        return
    regions, sizeable = _regions_per_value(labels)
    if values.size > MANY_VALUES and regions > SCATTER * values.size:
        raise InputError(f"{name}: {values.size} distinct values spread over {regions} separate regions: an "
                         "intensity image, not labels (one integer id per cell, 0 for background)")
    if sizeable >= SPLIT * values.size and sizeable >= values.size + 2:
        raise InputError(f"{name}: {values.size} value(s) cover {sizeable} separate cell-sized regions: a semantic "
                         "mask (one value for all cells)? adapt needs instance labels, one id per cell")


def _regions_per_value(labels: np.ndarray) -> tuple[int, int]:
    """(connected regions of equal non-zero value, those of at least REGION_PX pixels)."""
    from skimage.measure import label

    regions = label(labels.astype(np.int64), background=0, connectivity=2)
    sizes = np.bincount(regions.ravel())[1:]
    return int(sizes.size), int((sizes >= REGION_PX).sum())


def check_cell_count(samples: list, minimum: int = MIN_CELLS) -> int:
    """Total annotated cells; InputError naming the files when there are too few to learn from."""
    counts = {s.name: int(np.unique(s.labels[s.labels > 0]).size) for s in samples}
    total = sum(counts.values())
    if total < minimum:
        listing = ", ".join(f"{name} ({count})" for name, count in counts.items())
        raise InputError(f"too few cells to learn from: {total} annotated cell(s) in {listing}; annotate at least "
                         f"{minimum} (a few dozen adapt better)")
    return total
