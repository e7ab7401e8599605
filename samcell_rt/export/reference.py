"""The PyPI `samcell` 1.2.0 pipeline around a given SamModel, for parity checks (needs `samcell`).

Its pipeline calls `SamProcessor.from_pretrained('facebook/sam-vit-base')`, which needs the model
hub. The least invasive fix: while it is constructed, `from_pretrained` returns a processor built
locally with sam-vit-base's preprocessing settings (the library defaults). Nothing else changes.
"""

from __future__ import annotations

from unittest import mock

import numpy as np


class _ModelHolder:
    """What samcell's pipeline expects: an object with `get_model()`."""

    def __init__(self, model) -> None:
        self.model = model

    def get_model(self):
        return self.model


def local_processor():
    """A SamProcessor with the sam-vit-base preprocessing (resize 1024, ImageNet, pad 1024)."""
    from transformers import SamProcessor

    try:
        from transformers import SamImageProcessor

        image_processor = SamImageProcessor()
    except Exception:  # transformers 5 without torchvision: the PIL backend
        from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

        image_processor = SamImageProcessorPil()
    return SamProcessor(image_processor=image_processor)


def reference_pipeline(model, peak: float = 0.47, fill: float = 0.09):
    """samcell.pipeline.SlidingWindowPipeline running `model` (a SamModel) on the CPU."""
    from samcell.pipeline import SlidingWindowPipeline
    from transformers import SamProcessor

    with mock.patch.object(SamProcessor, "from_pretrained", staticmethod(lambda *a, **k: local_processor())):
        return SlidingWindowPipeline(_ModelHolder(model), "cpu", crop_size=256, cells_max=peak, cell_fill=fill)


def reference_run(pipeline, image_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, distance map) from the reference pipeline for an 8-bit gray image."""
    dist = pipeline.predict_on_full_img(image_u8)
    return pipeline.cells_from_dist_map(dist), dist
