"""Every file samcell-rt writes into an output folder, by name: one table for the CLI, the GUI and the service.

The OUTPUTS table names each kind of per-input output, its file-name suffix and, for documents,
how to render it; folder runs use it to write, and to recognise their own outputs (and the per-run
files named here) so they are never read back as inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..runtime.segmenter import Result
from .image_files import float_tiff_bytes, label_image, labels_tiff_bytes
from .lab_formats import cells_csv, geojson, rois_zip
from .summary import SUMMARY


@dataclass(frozen=True)
class OutputKind:
    """One kind of per-input output: the file `<stem><suffix>` (overlays of stacks: `<stem>_fNNNN<suffix>`),
    and, for the kinds that are one document per input, how to render it (results, pixel size in um ->
    bytes) and its media type: the folder writer, the service's `?format=` and the GUI's downloads
    all read this one table."""

    name: str
    suffix: str
    description: str
    media_type: str = ""
    render: Callable[[list[Result], float | None], bytes] | None = None  # None: written per frame (overlays)
    option: str = ""  # the `segment` flag that asks for an optional kind


OUTPUTS = (
    OutputKind("labels", "_labels.tif", "labels, uint16/uint32 TIFF (a stack for multi-frame inputs)", "image/tiff",
               lambda results, um: labels_tiff_bytes(label_image(results), um)),
    OutputKind("overlay", "_overlay.png", "the image with cell outlines (one per frame)"),
    OutputKind("cells", "_cells.csv", "one row per cell and frame", "text/csv",
               lambda results, um: cells_csv(results, um).encode()),
    OutputKind("distance", "_distance.tif", "float32 distance maps (with --save-distance)", "image/tiff",
               lambda results, um: float_tiff_bytes(np.stack([r.distance for r in results])), "--save-distance"),
    OutputKind("rois", "_rois.zip", "one ImageJ polygon ROI per cell, for Fiji's ROI Manager (with --rois)",
               "application/zip", lambda results, um: rois_zip(results), "--rois"),
    OutputKind("geojson", ".geojson", "one QuPath detection per cell, pixel coordinates (with --geojson)",
               "application/geo+json", lambda results, um: json.dumps(geojson(results, um)).encode(), "--geojson"),
)
KINDS = {kind.name: kind for kind in OUTPUTS}
# per-run outputs: run.json, and what reports/ derives from summary.csv after each run (and `samcell-rt report`)
RUN_JSON = "run.json"
REPORT = "report.html"
TIMELINE_SUFFIXES = ("_timeline.csv", "_timeline.png")
PLATE_METRICS = ("confluency", "cells")
PLATE_TABLE = "plate_wells.csv"
RUN_OUTPUTS = (RUN_JSON, REPORT, PLATE_TABLE, *(f"plate_{metric}.png" for metric in PLATE_METRICS))


def output_name(stem: str, kind: str, frame: int | None = None) -> str:
    """File name of one output; `frame` for the per-frame overlays of a stack."""
    suffix = KINDS[kind].suffix
    return f"{stem}_f{frame:04d}{suffix}" if frame is not None else f"{stem}{suffix}"


def stack_of_frame_stem(stem: str) -> str | None:
    """The stem of a stack whose per-frame overlays would take `stem`'s overlay name (`a` for `a_f0003`:
    a stack `a.tif` writes `a_f0003_overlay.png`, as would a file `a_f0003.tif`), else None."""
    match = re.fullmatch(r"(.+)_f\d{4,}", stem)
    return match.group(1) if match else None


def is_output_name(name: str) -> bool:
    """True for names samcell-rt writes into an output folder (never inputs there)."""
    return (name == SUMMARY or name in RUN_OUTPUTS or name.endswith(TIMELINE_SUFFIXES)
            or any(name.endswith(kind.suffix) for kind in OUTPUTS))
