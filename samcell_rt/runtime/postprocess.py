"""Distance map -> one label per cell: a marker per peak region, watershed inside the fill mask.

Markers follow SAMCell's reference rule so labels match it exactly: for each external contour
of the peak mask (OpenCV, simple chain approximation) with at least 3 points, one marker pixel at
the contour polygon's centroid, truncated to integers (the mean of the contour points when the
polygon has zero area). Peak regions whose contour has fewer than 3 points (single pixels and
straight lines) get no marker, as in the reference. Labels are renumbered 1..N.
"""

from __future__ import annotations

import numpy as np

from . import DEFAULT_FILL, DEFAULT_PEAK


def peak_markers(distance: np.ndarray, peak: float = DEFAULT_PEAK) -> np.ndarray:
    """int32 marker image with one seed pixel per peak region (distance > peak)."""
    import cv2

    mask = (distance > peak).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    markers = np.zeros(distance.shape, dtype=np.int32)
    height, width = distance.shape
    for index, contour in enumerate(contours):
        if len(contour) < 3:
            continue
        m = cv2.moments(contour)
        if m["m00"] != 0:
            cx, cy = int(m["m10"] / m["m00"]), int(m["m01"] / m["m00"])
        else:
            cx, cy = (int(v) for v in contour.reshape(-1, 2).mean(axis=0))
        markers[min(max(cy, 0), height - 1), min(max(cx, 0), width - 1)] = index + 1
    return markers


def labels_from_distance(distance: np.ndarray, peak: float = DEFAULT_PEAK, fill: float = DEFAULT_FILL) -> np.ndarray:
    """int32 labels (0 = background, 1..N cells) from a float distance map in [0, 1]."""
    from skimage.segmentation import relabel_sequential, watershed

    markers = peak_markers(distance, peak)
    if not markers.any():
        return np.zeros(distance.shape, dtype=np.int32)
    labels = watershed(-distance, markers, mask=distance > fill)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0]


def distance_target(labels: np.ndarray) -> np.ndarray:
    """Per-cell normalised distance to the cell's own border (float32, background 0): the map a model is
    trained to give for these labels, so also the map a confident result should have (`scale.map_misfit`)."""
    from scipy import ndimage

    target = np.zeros(labels.shape, np.float32)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        inside = labels[padded] == index
        # pad by one so a cell touching the image edge has a border there too
        distance = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        peak = distance.max()
        if peak > 0:
            target[padded][inside] = (distance / peak)[inside]
    return target
