"""Dask (extra `dist`): whole files or images go to workers; each worker process loads the model once.

Workers need the model file and, for file runs, the input and output folders at the same paths
(a shared filesystem), as is usual on a cluster. Results come back in input order; a failing
file or image is reported, never fatal to the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageValueError
from ..runtime.segmenter import Result, Segmenter, SegmentSettings
from .files import FileOutcome, RunOptions, stream_files

_SEGMENTERS: dict[WorkerSettings, Segmenter] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to rebuild an equivalent Segmenter: picklable, and hashable so each worker
    process loads one Segmenter per settings."""

    model: str
    engine: str
    settings: SegmentSettings

    @classmethod
    def of(cls, segmenter: Segmenter) -> WorkerSettings:
        return cls(str(segmenter.info.path), segmenter.engine_name, segmenter.settings)


def worker_segmenter(settings: WorkerSettings) -> Segmenter:
    """The worker process's Segmenter for `settings`, loaded on first use only."""
    with _LOCK:
        if settings not in _SEGMENTERS:
            _SEGMENTERS[settings] = Segmenter(settings.model, engine=settings.engine, settings=settings.settings)
        return _SEGMENTERS[settings]


def _file_task(settings: WorkerSettings, path: Path, out: Path, options: RunOptions) -> FileOutcome:
    ((_, outcome),) = stream_files([(0, path)], out, worker_segmenter(settings), options)
    return outcome


def _image_task(settings: WorkerSettings, key, image: np.ndarray) -> Result:
    return worker_segmenter(settings).segment_many([(key, image)], on_error="report").__next__()


def segment_files_on_cluster(client, files: list[Path], out: Path, segmenter: Segmenter,
                             options: RunOptions) -> Iterator[FileOutcome]:
    """One task per file; outcomes in input order."""
    settings = WorkerSettings.of(segmenter)
    futures = [client.submit(_file_task, settings, path, out, options, pure=False) for path in files]
    for path, future in zip(files, futures):
        try:
            yield future.result()
        except Exception as exc:  # a worker died or the task raised: report it for this file only
            yield FileOutcome.failed(path, f"worker failed: {type(exc).__name__}: {exc}")


def segment_many(client, segmenter: Segmenter, images: Iterable, on_error: str = "raise") -> Iterator[Result]:
    """`segmenter.segment_many` on a Dask cluster: one task per image, results in input order."""
    settings = WorkerSettings.of(segmenter)
    futures = []
    for index, item in enumerate(images):
        key, image = item if isinstance(item, tuple) else (index, item)
        futures.append((key, client.submit(_image_task, settings, key, np.asarray(image), pure=False)))
    for key, future in futures:
        try:
            result = future.result()
        except Exception as exc:
            result = Result.failed(key, f"worker failed: {type(exc).__name__}: {exc}")
        if not result.ok and on_error == "raise":
            raise ImageValueError(result.error)
        yield result


@contextlib.contextmanager
def dask_client(workers: int | None = None, address: str | None = None):
    """A client on a new local cluster (`workers` processes, one thread each) or on `address`."""
    from dask.distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client
