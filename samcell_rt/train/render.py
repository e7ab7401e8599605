"""Microscope appearances rendered from instance masks: training crops for looks no packaged data set has.

The permitted training sources show filled cells (phase-contrast bacteria, nuclear stains,
fluorescent cytoplasm). Labs also image membranes (bright outlines, dark interiors), bright-field
and DIC. Each renderer turns a crop's own labels into one such image, so the target distance map
stays exact; `render_appearance` picks one and degrades it as real optics and cameras do (defocus,
uneven illumination, Poisson-Gaussian noise at low photon counts). Every draw comes from the
caller's generator: the same seed renders the same image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .annotations import Sample


def _body(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cells filled with their own brightness (0.5-1), edges softened: the stained cell body."""
    import cv2

    levels = np.concatenate([[0.0], rng.uniform(0.5, 1.0, int(labels.max()))]).astype(np.float32)
    return cv2.GaussianBlur(levels[labels], (0, 0), 1.0)


def _borders(labels: np.ndarray) -> np.ndarray:
    """1 on each cell's outermost pixels (touching cells each keep their own border)."""
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels, mode="inner").astype(np.float32)


def membrane(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Membrane or boundary stain: bright outlines on a dim field. Inside and outside the cells are
    about equally dim (the interior between 0.7x and 1.4x the background), so, as in a
    membrane-stained epithelium, only the closed outline tells a cell from the space around it."""
    import cv2

    width = int(rng.integers(1, 4))
    ring = cv2.dilate(_borders(labels), np.ones((width, width), np.uint8)) * (labels > 0)
    background = rng.uniform(0.03, 0.15)
    field = np.where(labels > 0, background * rng.uniform(0.7, 1.4), background)
    return cv2.GaussianBlur(np.maximum(ring, field).astype(np.float32), (0, 0), 0.8)


def inverted(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark cells on a bright background (absorbing stains, inverted contrast)."""
    return 1.0 - 0.8 * _body(labels, rng)


def phase_halo(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase-contrast look: dark cell bodies inside a bright halo that fades into a grey background."""
    import cv2

    inside = (labels > 0).astype(np.float32)
    spread = cv2.GaussianBlur(inside, (0, 0), rng.uniform(2.0, 4.0))
    halo = np.clip(spread - inside, 0, 1)
    return 0.5 - 0.35 * _body(labels, rng) + rng.uniform(0.6, 1.0) * halo


def dic_relief(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """DIC look: the derivative of the cells' optical thickness along one shear direction, so one
    side of every cell is bright and the opposite side dark, on a grey background."""
    import cv2
    from scipy import ndimage

    apart = (labels > 0) & (_borders(labels) == 0)  # touching cells stay separate bumps
    thickness = cv2.GaussianBlur(np.sqrt(ndimage.distance_transform_edt(apart)).astype(np.float32), (0, 0), 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    gy, gx = np.gradient(thickness)
    relief = np.cos(angle) * gx + np.sin(angle) * gy
    return 0.5 + relief / (2.5 * max(float(np.abs(relief).max()), 1e-6))


RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "membrane": membrane, "inverted": inverted, "phase": phase_halo, "dic": dic_relief,
}


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Defocus, uneven illumination and Poisson-Gaussian noise, each drawn per crop."""
    import cv2

    height, width = image.shape
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.5, 2.0))
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    tilt = rng.uniform(-0.3, 0.3, 2)
    image = image * (1.0 + tilt[0] * (yy - 0.5) + tilt[1] * (xx - 0.5))
    photons = rng.uniform(20, 500)  # per unit brightness: low counts are visibly grainy
    image = rng.poisson(np.clip(image, 0, None) * photons) / photons + rng.normal(0, rng.uniform(0, 0.03), image.shape)
    return image.astype(np.float32)


def render_appearance(labels: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                      own_look: str = "") -> np.ndarray:
    """A uint8 image of `labels`' cells in one appearance (`kind`, else drawn uniformly from those other
    than the source's `own_look`), degraded and stretched to the full 0-255 range as the runtime's
    scaling would. A source's real images teach its own look better than a rendering of it: version 5,
    trained with phase renderings of the phase-contrast bacteria, found cells in their empty background."""
    name = kind or str(rng.choice(sorted(set(RENDERERS) - {own_look})))
    image = degrade(RENDERERS[name](np.asarray(labels), rng), rng)
    low, high = float(image.min()), float(image.max())
    return np.round((image - low) / max(high - low, 1e-6) * 255).astype(np.uint8)


RENDERED = "~"  # joins an original name or source to the appearance its rendered copy shows


def rendered_copy(sample: Sample, kind: str, seed: int = 0) -> Sample:
    """`sample` whole, shown in appearance `kind` (same labels), named and sourced `<original>~<kind>`:
    validation and scoring see appearances the sources lack, each still its own source. The seed
    and the name fix the image, so every run and every model sees the same rendering."""
    import zlib

    name = f"{sample.name}{RENDERED}{kind}"
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return replace(sample, name=name, source=f"{sample.source}{RENDERED}{kind}",
                   image=render_appearance(sample.labels, rng, kind))
