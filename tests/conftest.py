"""Shared fixtures: a tiny contract-following model and access to the reference SAMCell package."""

from __future__ import annotations

import pytest

from samcell_rt.synthetic import blob_model


@pytest.fixture(scope="session")
def blob_path(tmp_path_factory):
    """The blob test model (blur + sigmoid), written once per session."""
    return blob_model(tmp_path_factory.mktemp("models") / "blob.onnx")


@pytest.fixture(scope="session")
def segmenter(blob_path):
    from samcell_rt import load_model

    return load_model(str(blob_path), engine="cpu", batch_size=4)


@pytest.fixture(scope="session")
def reference():
    """The PyPI `samcell` 1.2.0 package (parity target); skipped where it is not installed."""
    try:
        import samcell.pipeline as pipeline
        import samcell.slidingWindow as sliding
    except Exception as exc:  # it imports torch, transformers and matplotlib at import time
        pytest.skip(f"reference package samcell 1.2.0 not importable: {exc}")
    return pipeline, sliding

