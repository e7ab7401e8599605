"""Known models: the catalogue of model names, where their files live, adapted models, and downloads.

Published SAMCell weights are checkpoints that `samcell-rt models pull NAME` downloads (resuming
partial downloads, checking sha256) and exports to ONNX in the user cache (`downloads.py`). Models
shipped inside the package store their weights once (safetensors, sha256 in `shipped.SHIPPED`) beside
a weight-free graph and a model card (`NAME.md`); their complete ONNX files, and derived ones such as
`samcell-lite-int8`, are made in the user cache on first use (see `samcell_rt.shipped`). Models
`samcell-rt adapt` makes are recorded in the cache (`adapted.py`). Each kind is one source type
(`sources.py`); `catalogue.py` looks names up and lists them. The default, SAMCell-Lite, runs
whenever no model is named, so segmentation works offline out of the box.
"""

from __future__ import annotations

from .adapted import (
    ADAPTED_FILE,
    NAME_LIMIT,
    adapted_models,
    adapting,
    check_adapted_name,
    register_adapted,
    remove_weights,
)
from .catalogue import (
    model_info,
    model_meta,
    model_rows,
    resolve_model,
    source_of,
    trainable_weights,
)
from .downloads import (
    HASHES_FILE,
    KNOWN,
    RELEASE,
    ModelEntry,
    download,
    exported_path,
    pull_model,
    record_hash,
    recorded_hashes,
)
from .sources import DEFAULT_MODEL, ModelKind, ModelRow, ModelSource

__all__ = [
    "ADAPTED_FILE", "DEFAULT_MODEL", "HASHES_FILE", "KNOWN", "NAME_LIMIT", "RELEASE", "ModelEntry", "ModelKind",
    "ModelRow", "ModelSource", "adapted_models", "adapting", "check_adapted_name", "download", "exported_path",
    "model_info", "model_meta", "model_rows", "pull_model", "record_hash", "recorded_hashes",
    "register_adapted", "remove_weights", "resolve_model", "source_of", "trainable_weights",
]
