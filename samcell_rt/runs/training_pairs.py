"""Training pairs written from a viewer: an image and its corrected labels, in the layout `train --data` reads.

The pair is `<name>.tif` + `<name>_labels.tif` (the labels output's own name), which
`train/annotations.py`'s `find_pairs` pairs by its `_labels` stem suffix; napari's Retrain writes
them here and runs `samcell-rt adapt` on the folder as a process (apps never import train/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..runtime.atomic import atomic_path
from .image_files import write_labels
from .outputs import output_name


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
