"""The output folder's manifest: which inputs own which outputs, and which are done with what.

`OUT/manifest.json` maps each input (absolute path) to its size and modification time, the
model's sha256, the run parameters, the files it wrote and its summary rows, and each output
stem to the input that owns it. It is rewritten atomically after every finished input, so a run
killed at any moment leaves a manifest that describes only complete outputs, and the next run
skips exactly those. Ownership is claimed before any work: an input from another folder with
the same file name cannot overwrite the outputs of the first, so a "done" entry never describes
files that another input has replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..runtime.atomic import write_text_atomic
from .outputs import stack_of_frame_stem
from .summary import SummaryRow
from .zarr_inputs import input_stem, source_signature

NAME = "manifest.json"
VERSION = 2


def recorded_outputs(folder: Path) -> set[str]:
    """Names of the files samcell-rt wrote into `folder`, by its manifest (empty without one)."""
    try:
        entries = json.loads((folder / NAME).read_text())["inputs"]
        return {name for entry in entries.values() for name in entry.get("outputs", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


class Manifest:
    """Read once at start, updated and saved per finished input."""

    def __init__(self, out: Path, model_sha256: str, params: dict) -> None:
        self.path = out / NAME
        self.model_sha256, self.params = model_sha256, params
        try:
            data = json.loads(self.path.read_text())
            self.entries: dict[str, dict] = data["inputs"]
            self.owners: dict[str, str] = data.get("owners") or {input_stem(k): k for k in self.entries}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.entries, self.owners = {}, {}  # absent or unreadable: nothing counts as done or owned

    def claim(self, files: list[Path], take_over: bool = False) -> None:
        """Record each input as the owner of its output stem; refuse inputs whose stem another input
        owns unless `take_over` (the user asked to overwrite)."""
        for path in files:
            key = str(path.resolve())
            owner = self.owners.get(input_stem(path)) or self._frame_overlay_owner(input_stem(path), key)
            if owner is not None and owner != key and not take_over:
                raise InputError(f"{path} would overwrite the outputs of {owner} in {self.path.parent} (same output "
                                 "names); use another --out folder, rename the file, or pass --overwrite")
            if owner is not None and owner != key:
                self.entries.pop(owner, None)
        self.owners.update({input_stem(path): str(path.resolve()) for path in files})
        self._save()

    def _frame_overlay_owner(self, stem: str, key: str) -> str | None:
        """Another input whose overlay names `stem`'s overlays can meet (stack `a` and file `a_f0000`)."""
        for other, owner in self.owners.items():
            if owner != key and (stack_of_frame_stem(stem) == other or stack_of_frame_stem(other) == stem):
                return owner
        return None

    def done_rows(self, path: Path) -> list[SummaryRow] | None:
        """The summary rows of `path` if it was finished with this model and these parameters (and its
        rows still read as rows)."""
        entry = self.entries.get(str(path.resolve()))
        if entry is None or entry.get("model_sha256") != self.model_sha256 or entry.get("params") != self.params:
            return None
        try:
            if entry.get("source") != source_signature(path):
                return None
        except OSError:
            return None
        if not all((self.path.parent / name).exists() for name in entry.get("outputs", [])):
            return None
        try:
            return [SummaryRow.parse(row) for row in entry["rows"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def record(self, path: Path, rows: list[SummaryRow], outputs: list[str]) -> None:
        """Mark `path` done and save the manifest atomically."""
        self.entries[str(path.resolve())] = {"source": source_signature(path), "model_sha256": self.model_sha256,
                                             "params": self.params, "outputs": outputs,
                                             "rows": [row.record() for row in rows]}
        self._save()

    def _save(self) -> None:
        write_text_atomic(self.path, json.dumps({"version": VERSION, "owners": self.owners, "inputs": self.entries},
                                                indent=1))
