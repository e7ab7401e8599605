"""Every model a name or path can stand for, looked up and listed in one order: a path to a file
first, then shipped models, published downloads, adapted models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelError
from ..runtime.contract import ModelInfo, read_props
from ..shipped import shipped_names, weights_file
from .adapted import adapted_models
from .downloads import KNOWN
from .sources import DEFAULT_MODEL, Adapted, Download, ModelRow, ModelSource, PlainFile, Shipped


def _named_models() -> Iterator[ModelSource]:
    """Every named model in lookup order; `adapted.json` is read only when the lookup reaches it."""
    yield from (Shipped(name) for name in shipped_names())
    yield from (Download(entry) for entry in KNOWN.values())
    yield from (Adapted(name, record) for name, record in adapted_models().items())


def _named(name: str, unknown: str) -> ModelSource:
    """The model called `name`; ModelError(`unknown`, listing the known names) when none is."""
    known = []
    for source in _named_models():
        if source.name == name:
            return source
        known.append(source.name)
    raise ModelError(name, f"{unknown} (known: {', '.join(known)})")


def source_of(model: str | Path) -> ModelSource:
    """The source of a model path or name: a path to an existing file wins over a name."""
    if Path(model).is_file():
        return PlainFile(Path(model))
    return _named(str(model), "no such file, and not a known model name")


def resolve_model(model: str | Path | None) -> Path:
    """Turn a model path or model name (None: the default) into an ONNX file path; raise ModelError if neither.

    A shipped model's complete ONNX is made in the user cache on its first use (about a second)."""
    if model is None:
        if DEFAULT_MODEL not in shipped_names():
            raise ModelError(weights_file(DEFAULT_MODEL), "the default model is missing from this installation; "
                                                          "reinstall samcell-rt or pass --model")
        model = DEFAULT_MODEL
    return source_of(model).resolve()


def trainable_weights(model: str | Path) -> Path:
    """The weights training can start from for a model path or name: a shipped model's weights
    (sha256-checked), an adapted model's saved weights, a downloaded checkpoint; ModelError when
    there are none here."""
    weights = source_of(model).weights()
    if weights is None:
        raise ModelError(model, "has no trainable weights here (a shipped model's weights, an adapted model's weights "
                                "or a downloaded checkpoint); pass --init CHECKPOINT to start from a checkpoint")
    return weights


def model_meta(model: str | Path | None) -> ModelInfo:
    """A model's metadata (name, tile, thresholds, trained cell sizes) from its ONNX file's props,
    without opening an inference engine; ModelError when the file breaks the model contract."""
    path = resolve_model(model)
    return ModelInfo.from_props(path, read_props(path))


def model_rows() -> list[ModelRow]:
    """Every shipped, downloadable and adapted model with its state on this machine (for `models list`)."""
    return [source.row() for source in _named_models()]


def model_info(name: str) -> dict:
    """Everything known about one model name."""
    return _named(name, "unknown model name").info()
