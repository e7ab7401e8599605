"""The kinds of model a name or path can stand for, one source type per kind, each answering the
same questions: its ONNX file, its trainable weights, its `models list` row, its `models info` record.

A new kind of model is a `ModelKind`, a source type here, and a place in `_named_models` (`catalogue.py`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Protocol

from ..errors import ModelError
from ..shipped import SHIPPED, card_file, complete_path, materialise, verified_weights, weights_file
from .downloads import ModelEntry, exported_path, recorded_hashes, verified_checkpoint

DEFAULT_MODEL = "samcell-lite"


class ModelKind(StrEnum):
    """What a model name stands for (the values are what `models list` prints)."""

    SHIPPED = "shipped"  # inside the package (`shipped.py`)
    DOWNLOAD = "download"  # a published checkpoint, `models pull` exports it
    ADAPTED = "adapted"  # made by `samcell-rt adapt`, recorded in the cache
    FILE = "file"  # a plain ONNX file given by its path


@dataclass(frozen=True)
class ModelRow:
    """One line of `models list`: the model's state on this machine."""

    name: str
    kind: ModelKind
    path: Path
    ready: bool
    default: bool


class ModelSource(Protocol):
    """What every kind of model answers."""

    kind: ClassVar[ModelKind]

    @property
    def name(self) -> str: ...

    def resolve(self) -> Path:
        """The model's ONNX file; ModelError when it cannot be used here (not downloaded, moved)."""

    def weights(self) -> Path | None:
        """The weights training can start from, when this machine has them."""

    def row(self) -> ModelRow: ...

    def info(self) -> dict:
        """Everything known about the model (`models info`, JSON)."""


@dataclass(frozen=True)
class Shipped:
    """A model inside the package, or a variant derived from one (int8)."""

    name: str
    kind: ClassVar[ModelKind] = ModelKind.SHIPPED

    def resolve(self) -> Path:
        return materialise(self.name)  # made in the user cache on first use (about a second)

    def weights(self) -> Path | None:
        """The shipped weights, sha256-checked; a derived variant has none of its own to train."""
        return verified_weights(self.name) if self.name in SHIPPED else None

    def row(self) -> ModelRow:
        return ModelRow(self.name, self.kind, complete_path(self.name), True, self.name == DEFAULT_MODEL)

    def info(self) -> dict:
        base = self.name if self.name in SHIPPED else None
        card = card_file(self.name)
        return {"name": self.name, "onnx": str(self.resolve()), "default": self.name == DEFAULT_MODEL,
                "weights": str(weights_file(base)) if base else None,
                "weights_sha256": SHIPPED[base].weights_sha256 if base else None,
                "model_card": str(card) if card.exists() else None}


@dataclass(frozen=True)
class Download:
    """A published checkpoint: usable once `models pull` downloaded and exported it."""

    entry: ModelEntry
    kind: ClassVar[ModelKind] = ModelKind.DOWNLOAD

    @property
    def name(self) -> str:
        return self.entry.name

    def resolve(self) -> Path:
        if exported_path(self.name).exists():
            return exported_path(self.name)
        raise ModelError(self.name, f"not downloaded yet: run `samcell-rt models pull {self.name}`")

    def weights(self) -> Path | None:
        return verified_checkpoint(self.entry)

    def row(self) -> ModelRow:
        path = exported_path(self.name)
        return ModelRow(self.name, self.kind, path, path.exists(), False)

    def info(self) -> dict:
        path = exported_path(self.name)
        return asdict(self.entry) | {"recorded_sha256": recorded_hashes().get(self.entry.file),
                                     "onnx": str(path) if path.exists() else None}


@dataclass(frozen=True)
class Adapted:
    """A model `samcell-rt adapt` made, as its record in `adapted.json` describes it."""

    name: str
    record: dict
    kind: ClassVar[ModelKind] = ModelKind.ADAPTED

    def resolve(self) -> Path:
        if Path(self.record["onnx"]).is_file():
            return Path(self.record["onnx"])
        raise ModelError(self.name, f"adapted model file {self.record['onnx']} is missing (moved or deleted?); run "
                                    "`samcell-rt adapt` again or pass the file's new path")

    def weights(self) -> Path | None:
        weights = self.record.get("weights")
        return Path(weights) if weights and Path(weights).is_file() else None

    def row(self) -> ModelRow:
        path = Path(self.record["onnx"])
        return ModelRow(self.name, self.kind, path, path.is_file(), False)

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, **self.record}


@dataclass(frozen=True)
class PlainFile:
    """An ONNX file named by its path: nothing is known about it beyond the file (no weights to train)."""

    path: Path
    kind: ClassVar[ModelKind] = ModelKind.FILE

    def row(self) -> ModelRow:
        return ModelRow(self.name, self.kind, self.path, self.path.is_file(), False)

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, "onnx": str(self.path)}

    @property
    def name(self) -> str:
        return str(self.path)

    def resolve(self) -> Path:
        return self.path

    def weights(self) -> Path | None:
        return None
