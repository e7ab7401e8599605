"""The output folder's manifest: which inputs are done, with which model and parameters.

`OUT/manifest.json` maps each input (absolute path) to its size and modification time, the
model's sha256, the run parameters, the files it wrote and its summary rows. It is rewritten
atomically after every finished input, so a run killed at any moment leaves a manifest that
describes only complete outputs, and the next run skips exactly those.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text_atomic

NAME = "manifest.json"


class Manifest:
    """Read once at start, updated and saved per finished input."""

    def __init__(self, out: Path, model_sha256: str, params: dict) -> None:
        self.path = out / NAME
        self.model_sha256, self.params = model_sha256, params
        try:
            self.entries: dict[str, dict] = json.loads(self.path.read_text())["inputs"]
        except (OSError, ValueError, KeyError):
            self.entries = {}  # absent or unreadable: nothing counts as done

    @staticmethod
    def _source(path: Path) -> dict:
        stat = path.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def done_rows(self, path: Path) -> list[dict] | None:
        """The summary rows of `path` if it was finished with this model and these parameters."""
        entry = self.entries.get(str(path.resolve()))
        if entry is None or entry.get("model_sha256") != self.model_sha256 or entry.get("params") != self.params:
            return None
        try:
            if entry.get("source") != self._source(path):
                return None
        except OSError:
            return None
        if not all((self.path.parent / name).exists() for name in entry.get("outputs", [])):
            return None
        return entry["rows"]

    def record(self, path: Path, rows: list[dict], outputs: list[str]) -> None:
        """Mark `path` done and save the manifest atomically."""
        self.entries[str(path.resolve())] = {"source": self._source(path), "model_sha256": self.model_sha256,
                                             "params": self.params, "outputs": outputs, "rows": rows}
        write_text_atomic(self.path, json.dumps({"version": 1, "inputs": self.entries}, indent=1))
