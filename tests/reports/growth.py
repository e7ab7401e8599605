"""Synthetic experiments shared by the timeline, plate and report tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from samcell_rt.synthetic import as_dtype, synthetic_cells

DOUBLING_FRAMES = 3
FRAME_HOURS = 0.5


def growth_counts(frames: int = 13, start: int = 5, cap: int = 40) -> list[int]:
    """Cell counts doubling every DOUBLING_FRAMES frames, then a plateau at `cap`."""
    return [min(cap, round(start * 2 ** (f / DOUBLING_FRAMES))) for f in range(frames)]


def growth_stack(path: Path, frames: int = 13) -> list[int]:
    """An ImageJ time-lapse (finterval FRAME_HOURS h) whose cell count doubles every DOUBLING_FRAMES frames."""
    counts = growth_counts(frames)
    planes = [as_dtype(synthetic_cells((448, 448), count=c, seed=f)[0], "uint8")
              for f, c in enumerate(counts)]
    tifffile.imwrite(path, np.stack(planes), imagej=True,
                     metadata={"axes": "TYX", "finterval": FRAME_HOURS, "tunit": "hour"})
    return counts


def well_folder(folder: Path, rows: str = "ABCDEFGH", cols: int = 12) -> None:
    """One small PNG per well (A01..H12), cell counts varying across the plate."""
    folder.mkdir(parents=True, exist_ok=True)
    for r, letter in enumerate(rows):
        for c in range(1, cols + 1):
            image = synthetic_cells((128, 128), count=1 + (r + c) % 5, seed=r * 24 + c)[0]
            cv2.imwrite(str(folder / f"plate1_{letter}{c:02d}.png"), as_dtype(image, "uint8"))
