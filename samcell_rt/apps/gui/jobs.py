"""The GUI's job list and its one background worker: the model is loaded once, the page never waits.

Uploaded bytes are written under a private temporary folder with server-made names, so nothing a
client sends ever becomes part of a filesystem path; an upload is deleted as soon as it is read.
Finished results (frames, labels, distance maps, cell tables) are kept on disk in that folder and
only the few most recently viewed stay in memory, so a long session of uploads does not grow the
process; removing a job deletes its files, and closing the app deletes the folder. The worker
survives any failure of one job: that job is marked failed with the reason, the next one runs.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import queue
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ImageReadError
from ...runtime.io import MAX_PIXELS, UPLOAD_SUFFIXES, ImageStack, read_image
from ...runtime.segmenter import Result, Segmenter

IN_MEMORY = 4  # finished jobs whose results stay loaded
log = logging.getLogger("samcell_rt.apps")


@dataclass
class Job:
    """One uploaded file and what became of it (its results live in the JobQueue's store)."""

    id: int
    name: str
    path: Path
    status: str = "queued"  # queued, processing, done, failed
    error: str | None = None
    frames: int = 0
    cells: list[int] | None = None
    warnings: list[str] = field(default_factory=list)  # quality flags of its frames (runtime/quality.py)
    thresholds: tuple[float, float] | None = None
    pixel_size_um: float | None = None
    metrics: dict | None = None  # the first frame's numbers, for plots across jobs without loading results

    def summary(self) -> dict:
        cells = self.cells or []
        return {"id": self.id, "name": self.name, "status": self.status, "error": self.error,
                "frames": self.frames, "cells": cells[0] if len(cells) == 1 else cells, "warnings": self.warnings}


@dataclass
class Outcome:
    """A finished job's heavy data: the image as read and one result per frame."""

    stack: ImageStack
    results: list[Result]

    def frame(self, index: int) -> tuple[object, Result]:
        """The original frame and its result; IndexError for a frame that does not exist."""
        if not 0 <= index < len(self.results):
            raise IndexError(f"frame {index} does not exist (0..{len(self.results) - 1})")
        return self.stack.frames[index], self.results[index]


class JobQueue:
    """Thread-safe job store plus the worker thread that segments queued jobs in order."""

    def __init__(self, segmenter: Segmenter, max_pixels: int = MAX_PIXELS, in_memory: int = IN_MEMORY,
                 max_bytes: int | None = None) -> None:
        self.segmenter, self.max_pixels, self.in_memory = segmenter, max_pixels, in_memory
        self.max_bytes = max_bytes  # decoded bytes per image: a small compressed upload cannot inflate past it
        self.jobs: dict[int, Job] = {}
        self._loaded: OrderedDict[int, Outcome] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._folder = tempfile.TemporaryDirectory(prefix="samcell-rt-gui-")
        self._worker = threading.Thread(target=self._run, name="samcell-rt-worker", daemon=True)
        self._worker.start()

    def add(self, filename: str, data: bytes) -> Job:
        """Store an upload under a server-made name and queue it."""
        suffix = Path(filename).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise ImageReadError(filename, f"not an accepted image type ({', '.join(UPLOAD_SUFFIXES)})")
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

    def remove(self, job_id: int) -> None:
        """Forget a job and delete its files (a job being processed is dropped when it finishes)."""
        with self._lock:
            job = self.jobs.pop(job_id)
            self._loaded.pop(job_id, None)
            job.path.unlink(missing_ok=True)
            self._store_path(job_id).unlink(missing_ok=True)

    def outcome(self, job: Job) -> Outcome:
        """A finished job's results, from memory or its file (then kept among the recent few)."""
        with self._lock:
            if job.id not in self._loaded:
                with open(self._store_path(job.id), "rb") as handle:
                    self._loaded[job.id] = pickle.load(handle)  # our own file in our private folder
            self._loaded.move_to_end(job.id)
            outcome = self._loaded[job.id]
            self._trim()
            return outcome

    def _store_path(self, job_id: int) -> Path:
        return Path(self._folder.name) / f"{job_id}.results"

    def _keep(self, job: Job, outcome: Outcome) -> None:
        with self._lock:
            if job.id not in self.jobs:
                return  # removed while it ran
            with open(self._store_path(job.id), "wb") as handle:
                pickle.dump(outcome, handle, protocol=pickle.HIGHEST_PROTOCOL)
            self._loaded[job.id] = outcome
            self._loaded.move_to_end(job.id)
            self._trim()
            job.cells = [int(r.metrics["cells"]) for r in outcome.results]
            job.warnings = list(dict.fromkeys(w for r in outcome.results for w in r.warnings))
            job.metrics = dict(outcome.results[0].metrics)
            job.frames, job.pixel_size_um = len(outcome.results), outcome.stack.pixel_size_um

    def _trim(self) -> None:
        while len(self._loaded) > self.in_memory:
            self._loaded.popitem(last=False)

    def _run(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                job = self.get(job_id)
            except KeyError:
                continue  # removed while queued
            job.status = "processing"
            try:
                stack = self._read(job)
                results = list(self.segmenter.segment_many(stack.frames))
                self._keep(job, Outcome(stack, results))
                job.thresholds = (self.segmenter.peak, self.segmenter.fill)
                job.status = "done"
            except Exception as exc:  # one job's failure never stops the worker
                log.warning("job %s failed: %s", job.name, exc)
                job.status, job.error = "failed", str(exc).replace(str(job.path), job.name)

    def _read(self, job: Job) -> ImageStack:
        """The upload as read; its file is deleted right after, whatever happened."""
        try:
            return read_image(job.path, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        finally:
            job.path.unlink(missing_ok=True)

    def rethreshold(self, job: Job, peak: float, fill: float) -> None:
        """New thresholds for a finished job: post-processing only, no engine call."""
        outcome = self.outcome(job)
        results = [self.segmenter.relabel(r, peak, fill, intensity=frame)
                   for r, frame in zip(outcome.results, outcome.stack.frames)]
        self._keep(job, Outcome(outcome.stack, results))
        job.thresholds = (peak, fill)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)
        with self._lock:
            self._loaded.clear()
        self._folder.cleanup()
