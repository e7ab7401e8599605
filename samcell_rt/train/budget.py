"""The time budget of one `adapt` run: elapsed and remaining seconds, and one progress bar.

Why one object: every stage of `adapt` (loading, crops, cross-validation, training, export) takes its
time from the same clock, and the user sees one bar whose end is the end of the budget.
"""

from __future__ import annotations

import math
import sys
import time


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

    def warn(self, message: str) -> None:
        self.bar.write(f"warning: {message}", file=sys.stderr)

    def close(self) -> None:
        self.bar.n = self.bar.total
        self.bar.set_description("done")
        self.bar.close()
