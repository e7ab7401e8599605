"""Fixtures for export tests: skip the whole folder without the `export` extra."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="export tests need the 'export' extra (torch)")
pytest.importorskip("transformers", reason="export tests need the 'export' extra (transformers)")


@pytest.fixture(scope="session")
def tiny_sam():
    from samcell_rt.export.model import random_sam, tiny_config

    return random_sam(tiny_config(), seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    """The tiny model saved exactly as published SAMCell weights are: a SamModel state dict (.pt)."""
    path = tmp_path_factory.mktemp("ckpt") / "samcell-tiny.pt"
    torch.save(tiny_sam.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_checkpoint):
    from samcell_rt.export.model import tiny_config
    from samcell_rt.export.onnx import ModelProps, export_model

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_model(tiny_checkpoint, out, ModelProps(name="tiny-test", version="7"), config=tiny_config())
    return out
