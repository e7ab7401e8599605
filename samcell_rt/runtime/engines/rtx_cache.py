"""TensorRT-RTX's runtime (JIT) cache, kept in the user cache so the second start is fast.

A TensorRT-RTX engine holds device-independent code; the first run on a GPU compiles kernels for
it (and for each new input shape), which takes seconds. The runtime cache stores those kernels.
It is loaded when the engine opens (TensorRT-RTX itself rejects a blob from another GPU, driver
or version, so a stale file only costs a recompile) and written back, atomically, after the first
run of each batch size, when new kernels may have been compiled.
"""

from __future__ import annotations

import threading
from pathlib import Path


class RuntimeCache:
    """One runtime config + cache shared by an engine's execution contexts."""

    def __init__(self, engine, path: Path) -> None:
        self.path = path
        self.config = engine.create_runtime_config()
        self.cache = self.config.create_runtime_cache()
        self.loaded = bool(path.exists() and self.cache.deserialize(path.read_bytes()))
        self.config.set_runtime_cache(self.cache)
        self._saved_batches: set[int] = set()
        self._lock = threading.Lock()

    def context(self, engine):
        """An execution context that compiles into (and reuses) this cache."""
        return engine.create_execution_context(self.config)

    def after_run(self, batch: int) -> None:
        """Persist the cache after the first run of each batch size (new kernels may exist)."""
        with self._lock:
            if batch in self._saved_batches:
                return
            self._saved_batches.add(batch)
            self.save()

    def save(self) -> None:
        from ..atomic import write_bytes_atomic

        write_bytes_atomic(self.path, bytes(self.cache.serialize()))
