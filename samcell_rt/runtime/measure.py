"""Per-image measurements of a label image."""

from __future__ import annotations

import numpy as np


def image_metrics(labels: np.ndarray) -> dict[str, float]:
    """Cell count, mean and median cell area (pixels) and confluency (covered fraction)."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return {
        "cells": int(areas.size),
        "mean_area_px": float(areas.mean()) if areas.size else 0.0,
        "median_area_px": float(np.median(areas)) if areas.size else 0.0,
        "confluency": float(areas.sum() / labels.size) if labels.size else 0.0,
    }
