"""What `adapt` leaves behind: the trained weights in the cache, the verified ONNX model at `--out`,
and the registry record, in that order, so a run killed at any point leaves the old model whole.

Why one file of weights per run (name, data hash, random suffix): a failed or killed run never
touches the weights a registered model names; `adapt.remove_orphan_weights` clears what such a run
left once its name is claimed again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..registry import register_adapted, remove_weights
from ..runtime.atomic import atomic_path, write_text_atomic
from ..runtime.contract import META_KEYS
from .adapt_scores import Scores, Verdict
from .annotations import Sample
from .data import Augment, cell_diameters


@dataclass
class AdaptResult:
    """What `adapt` made and measured."""

    out: Path
    name: str
    verdict: Verdict
    training: dict  # recipe shipped, why, optimiser steps and crops per training (the table's "time bought")
    seconds: float
    record: dict

    @property
    def before(self) -> Scores:
        return self.verdict.before

    @property
    def after(self) -> Scores:
        return self.verdict.after


@dataclass
class Shipment:
    """Everything the adapted model's files record: the trained wrapper, where it came from, on what
    data, how it scored and what the budget bought."""

    wrapper: object  # export.model.SamCellTiles, its weights the ones to ship
    parent: str  # the --model compared against
    parent_sha256: str
    train: list[Sample]
    val: list[Sample]
    verdict: Verdict
    training: dict
    settings: dict


def ship(shipment: Shipment, out: Path, name: str, overwrite: bool, digest: str, weights_dir: Path,
         minutes: float) -> dict:
    """Weights to the cache, the verified ONNX file to `out`, then the registry record; returns the
    record. A failure removes this run's weights and raises."""
    weights = weights_dir / f"{name}-{digest[:12]}-{uuid.uuid4().hex[:8]}.safetensors"
    try:
        record = _record(shipment, out, weights, digest, minutes)
        _write(shipment, weights, out, name, record)
        register_adapted(name, record, overwrite)
        return record
    except BaseException:
        remove_weights(weights)
        raise


def _record(shipment: Shipment, out: Path, weights: Path, digest: str, minutes: float) -> dict:
    verdict = shipment.verdict
    return {
        "onnx": str(out.resolve()), "weights": str(weights), "parent": shipment.parent,
        "parent_sha256": shipment.parent_sha256, "data_sha256": digest,
        "data": [s.name for s in shipment.train], "val": [s.name for s in shipment.val],
        "peak": verdict.peak, "fill": verdict.fill, "before": verdict.before.as_dict(),
        "after": verdict.after.as_dict(), "scored_on": verdict.scored_on, "minutes": minutes,
        "training": shipment.training, "settings": shipment.settings,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write(shipment: Shipment, weights: Path, out: Path, name: str, record: dict) -> None:
    from safetensors.torch import save_file

    from ..export.onnx import ModelProps, export_model

    sam, verdict = shipment.wrapper.sam, shipment.verdict
    sizes = cell_diameters(shipment.train, Augment(**shipment.settings["augment"]))
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().clone().contiguous() for k, v in sam.state_dict().items()}, str(tmp))
    write_text_atomic(weights.with_suffix(".json"), json.dumps(
        {"sam_config": sam.config.to_dict(), "data": {"cell_diameter_px": sizes}, "adapt": record}, indent=2, default=str))
    scores = {"before": verdict.before.as_dict(), "after": verdict.after.as_dict(), "scored_on": verdict.scored_on}
    extra = {META_KEYS["adapted_from"]: shipment.parent, META_KEYS["parent_sha256"]: shipment.parent_sha256,
             META_KEYS["training_data_sha256"]: record["data_sha256"], META_KEYS["adapt_scores"]: json.dumps(scores)}
    diameter = (sizes["typical"], tuple(sizes["range"])) if sizes else None
    export_model(weights, out, ModelProps(name=name, version="1", tile=shipment.wrapper.tile, peak=verdict.peak,
                                          fill=verdict.fill, diameter=diameter), extra=extra)

