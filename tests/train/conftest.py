"""What the adapt tests share: a fresh user cache per test, annotated pairs of drawn cells and a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from samcell_rt.synthetic import synthetic_cells


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A fresh, empty user cache (registry, cached encoders, weights) for one test."""
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_pairs(folder: Path, seeds=(1,), count: int = 14) -> Path:
    """Napari-style `X.tif` + `X_labels.tif` pairs of drawn cells (16-bit images), one per seed."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, labels = synthetic_cells((256, 320), count=count, radius=14, seed=seed)
        tifffile.imwrite(folder / f"c{seed}.tif", (image * 60000).astype(np.uint16))
        tifffile.imwrite(folder / f"c{seed}_labels.tif", labels.astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny SAM (random weights) as a trainer checkpoint plus its exported ONNX, whose stored peak
    threshold (0.95) is wrong for the planted cells: (checkpoint, onnx)."""
    pytest.importorskip("torch", reason="adapt needs the 'train' extra")
    from safetensors.torch import save_file

    from samcell_rt.export.model import config_by_name, random_sam
    from samcell_rt.export.onnx import ModelProps, export_model

    root = tmp_path_factory.mktemp("tiny")
    sam = random_sam(config_by_name("tiny-256"), 0)
    checkpoint = root / "tiny.safetensors"
    save_file({k: v.clone().contiguous() for k, v in sam.state_dict().items()}, str(checkpoint))
    checkpoint.with_suffix(".json").write_text(json.dumps({"sam_config": sam.config.to_dict()}))
    export_model(checkpoint, root / "tiny.onnx", ModelProps(name="tiny", peak=0.95))
    return checkpoint, root / "tiny.onnx"
