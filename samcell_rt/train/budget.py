"""The time budget of one `adapt` run: elapsed and remaining seconds, one progress bar, and the
measured speeds both recipes reserve time from.

Why one object: every stage of `adapt` (loading, crops, cross-validation, training, export) takes its
time from the same clock, and the user sees one bar whose end is the end of the budget.
"""

from __future__ import annotations

import math
import sys
import time

# export's cost beyond its torch and onnxruntime passes (tracing, onnxslim, saving): 15-40 s on the
# development CPU, the most under a load average of 16 with a tiny model
EXPORT_FIXED_SECONDS = 30.0


class Budget:
    """`seconds` from now; a progress bar (ETA = end of the budget) unless `progress` is False."""

    def __init__(self, seconds: float, progress: bool) -> None:
        from tqdm import tqdm

        self.start, self.seconds = time.monotonic(), seconds
        self.bar = tqdm(total=int(math.ceil(seconds)), unit="s", desc="adapt", disable=not progress, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.seconds - self.elapsed()

    def tick(self, phase: str | None = None) -> None:
        """Move the bar to the elapsed time; `phase` names the stage now running."""
        if phase:
            self.bar.set_description(phase)
        self.bar.update(max(0, min(self.bar.total, int(self.elapsed())) - self.bar.n))

    def maps(self, segmenter, samples: list) -> list:
        """Each sample's whole-image distance map from a runtime `Segmenter`, the bar moving per image."""
        maps = []
        for sample in samples:
            maps.append(segmenter.segment(sample.image).distance)
            self.tick()
        return maps

    def warn(self, message: str) -> None:
        self.bar.write(f"warning: {message}", file=sys.stderr)

    def close(self) -> None:
        self.bar.n = self.bar.total
        self.bar.set_description("done")
        self.bar.close()


def export_seconds(torch_tile_seconds: float, onnx_tile_seconds: float) -> float:
    """Export with verification: torch on 4 tiles plus tracing a batch of 2 (about 6 torch passes),
    onnxruntime on 4 tiles, plus the graph simplification and saving."""
    return 6 * torch_tile_seconds + 4 * onnx_tile_seconds + EXPORT_FIXED_SECONDS


def torch_tile_seconds(wrapper) -> float:
    """Seconds of one warm torch forward pass on one tile (what export's verification repeats); the
    first, cold pass is several times slower and would overstate it."""
    import torch

    tile = torch.zeros((1, 1, wrapper.tile, wrapper.tile), dtype=torch.uint8)
    with torch.no_grad():
        wrapper(tile)
        start = time.perf_counter()
        wrapper(tile)
    return time.perf_counter() - start
