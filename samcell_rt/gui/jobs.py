"""The GUI's job list and its one background worker: the model is loaded once, the page never waits.

Uploaded bytes are written under a private temporary folder with server-made names, so nothing a
client sends ever becomes part of a filesystem path.
"""

from __future__ import annotations

import itertools
import queue
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SamcellError
from ..runtime.io import IMAGE_SUFFIXES, ImageStack, read_image
from ..runtime.preprocess import ImageValueError
from ..runtime.segmenter import Result, Segmenter


@dataclass
class Job:
    """One uploaded file and what became of it."""

    id: int
    name: str
    path: Path
    status: str = "queued"  # queued, processing, done, failed
    error: str | None = None
    stack: ImageStack | None = None
    results: list[Result] = field(default_factory=list)
    thresholds: tuple[float, float] | None = None

    def summary(self) -> dict:
        cells = [r.metrics.get("cells") for r in self.results]
        return {"id": self.id, "name": self.name, "status": self.status, "error": self.error,
                "frames": len(self.results), "cells": cells[0] if len(cells) == 1 else cells}


class JobQueue:
    """Thread-safe job store plus the worker thread that segments queued jobs in order."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._folder = tempfile.TemporaryDirectory(prefix="samcell-rt-gui-")
        self._worker = threading.Thread(target=self._run, name="samcell-rt-worker", daemon=True)
        self._worker.start()

    def add(self, filename: str, data: bytes) -> Job:
        """Store an upload under a server-made name and queue it."""
        suffix = Path(filename).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise ValueError(f"{filename}: not an accepted image type ({', '.join(IMAGE_SUFFIXES)})")
        with self._lock:
            job_id = next(self._ids)
            path = Path(self._folder.name) / f"{job_id}{suffix}"
            path.write_bytes(data)
            job = self.jobs[job_id] = Job(job_id, Path(filename).name, path)
        self._queue.put(job_id)
        return job

    def get(self, job_id: int) -> Job:
        with self._lock:
            if job_id not in self.jobs:
                raise KeyError(job_id)
            return self.jobs[job_id]

    def all(self) -> list[Job]:
        with self._lock:
            return list(self.jobs.values())

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.get(job_id)
            job.status = "processing"
            try:
                job.stack = read_image(job.path)
                job.results = list(self.segmenter.segment_many(job.stack.frames))
                job.thresholds = (self.segmenter.peak, self.segmenter.fill)
                job.status = "done"
            except (SamcellError, ImageValueError, ValueError, MemoryError) as exc:
                job.status, job.error = "failed", str(exc).replace(str(job.path), job.name)

    def rethreshold(self, job: Job, peak: float, fill: float) -> None:
        """New thresholds for a finished job: post-processing only, no engine call."""
        job.results = [self.segmenter.relabel(r, peak, fill, intensity=frame)
                       for r, frame in zip(job.results, job.stack.frames)]
        job.thresholds = (peak, fill)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)
        self._folder.cleanup()


def frame_of(job: Job, frame: int) -> tuple[np.ndarray, Result]:
    """The original frame and its result; IndexError for a frame that does not exist."""
    if not 0 <= frame < len(job.results):
        raise IndexError(frame)
    return job.stack.frames[frame], job.results[frame]
