"""samcell-rt: fast, dependable SAMCell cell segmentation.

Public API (heavy modules load on first use, so `import samcell_rt` stays fast)::

    from samcell_rt import Segmenter, load_model, segment, Result
    seg = load_model()                   # the shipped default (samcell-lite); or a path / model name
    result = seg.segment(image)          # labels, distance, metrics, timings
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["Result", "Segmenter", "load_model", "segment", "__version__"]

if TYPE_CHECKING:
    import numpy as np

    from .runtime.segmenter import Result, Segmenter


def __getattr__(name: str) -> Any:
    if name in ("Segmenter", "Result"):
        from .runtime import segmenter

        return getattr(segmenter, name)
    raise AttributeError(f"module 'samcell_rt' has no attribute {name!r}")


def load_model(model: str | None = None, engine: str = "cpu", **options: Any) -> Segmenter:
    """Load a model (file path, shipped or downloaded model name; None: the shipped default) on an
    engine, ready to segment many images. Options go to `Segmenter`: `settings` (a `SegmentSettings`) or
    its fields as keywords (batch_size, peak, fill, threads, scaling, diameter)."""
    from .registry import resolve_model
    from .runtime.segmenter import Segmenter

    return Segmenter(resolve_model(model), engine=engine, **options)


def segment(image: np.ndarray, model: str | None = None, engine: str = "cpu", **options: Any) -> Result:
    """Segment one 2-D image. Loads the model each call: use `load_model` for many images."""
    return load_model(model, engine, **options).segment(image)
