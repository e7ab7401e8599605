"""Contact sheet of the appearances `train.render` draws from real masks, for a person to judge.

Rows: permitted packaged sources (never the reserved ones); columns: the source image as it is,
then each rendering of the same crop's labels with its degradations. Writes
benchmarks/results/render_contact_sheet.png.

    python benchmarks/render_sheet.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from samcell_rt.train.render import RENDERERS, render_appearance
from samcell_rt.train.sources import load_packaged

SOURCES = ("bacteria", "hela", "cho", "scellseg-cyto", "bbbc007")
CROP = 256


def crop(sample) -> tuple[np.ndarray, np.ndarray]:
    """The CROP x CROP window holding the most cells (a busy, representative patch)."""
    height, width = sample.labels.shape
    best, corner = -1, (0, 0)
    for y in range(0, max(1, height - CROP + 1), 64):
        for x in range(0, max(1, width - CROP + 1), 64):
            count = np.unique(sample.labels[y : y + CROP, x : x + CROP]).size
            if count > best:
                best, corner = count, (y, x)
    y, x = corner
    return sample.image[y : y + CROP, x : x + CROP], sample.labels[y : y + CROP, x : x + CROP]


def main() -> None:
    rows = []
    for index, source in enumerate(SOURCES):
        image, labels = crop(load_packaged(source)[0])
        tiles = [image] + [render_appearance(labels, np.random.default_rng(index), kind) for kind in sorted(RENDERERS)]
        tiles = [cv2.copyMakeBorder(cv2.resize(t, (CROP, CROP)), 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
                 for t in tiles]
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    header = np.full((36, sheet.shape[1]), 255, np.uint8)
    for column, title in enumerate(["as packaged", *sorted(RENDERERS)]):
        cv2.putText(header, title, (column * (CROP + 8) + 10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    out = Path(__file__).parent / "results" / "render_contact_sheet.png"
    cv2.imwrite(str(out), np.vstack([header, sheet]))
    print(f"wrote {out} ({', '.join(SOURCES)} x {', '.join(sorted(RENDERERS))})")


if __name__ == "__main__":
    main()
