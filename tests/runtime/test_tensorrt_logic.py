"""TensorRT engine header, cache and selection logic: everything that needs no GPU."""

from __future__ import annotations

import dataclasses

import pytest

from samcell_rt.errors import EngineUnavailableError
from samcell_rt.runtime.engines import open_engine, resolve_engine
from samcell_rt.runtime.engines import tensorrt as trt_engine
from samcell_rt.runtime.engines.trt_header import (EngineHeader, EngineMismatchError, cached_engine_path,
                                                  find_cached_engine, read_header, write_engine)


def header(**changes) -> EngineHeader:
    base = EngineHeader("10.9.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16", 1, 8, 32, 256, "ab" * 32,
                        "model.onnx", {"samcell.model_name": "m"})
    return dataclasses.replace(base, **changes)


def test_header_roundtrip_keeps_engine_bytes(tmp_path):
    write_engine(tmp_path / "e.engine", header(), b"\x00serialized-engine\xff")
    read, offset = read_header(tmp_path / "e.engine")
    assert read == header()
    assert (tmp_path / "e.engine").read_bytes()[offset:] == b"\x00serialized-engine\xff"


def test_plain_tensorrt_file_without_header_is_refused(tmp_path):
    (tmp_path / "raw.engine").write_bytes(b"ftrt" + b"\0" * 64)
    with pytest.raises(EngineMismatchError, match="no header"):
        read_header(tmp_path / "raw.engine")


@pytest.mark.parametrize("field, value", [("gpu_name", "NVIDIA A100"), ("compute_capability", "8.0"),
                                          ("tensorrt_version", "10.3.0"), ("precision", "fp32"),
                                          ("onnx_sha256", "cd" * 32), ("max_batch", 64)])
def test_cache_key_depends_on_every_validity_fact(field, value):
    assert header().cache_key() != header(**{field: value}).cache_key()


def test_cache_key_ignores_facts_that_do_not_affect_validity():
    assert header().cache_key() == header(opt_batch=4, onnx_path="elsewhere.onnx").cache_key()


def test_foreign_or_stale_engine_is_refused_with_the_rebuild_command():
    with pytest.raises(EngineMismatchError, match=r"built for NVIDIA H100.*this GPU is NVIDIA L4.*"
                                                  r"samcell-rt build-engine model.onnx --precision fp16"):
        header().check("NVIDIA L4", "8.9", "10.9.0")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.9.0, this is TensorRT 10.10.0"):
        header().check("NVIDIA H100 80GB HBM3", "9.0", "10.10.0")
    with pytest.raises(EngineMismatchError, match="another ONNX model"):
        header().check("NVIDIA H100 80GB HBM3", "9.0", "10.9.0", onnx_sha256="ef" * 32)
    header().check("NVIDIA H100 80GB HBM3", "9.0", "10.9.0", onnx_sha256="ab" * 32)  # matches: no error


def test_cache_lookup_finds_only_valid_engines(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    good, other_gpu = header(), header(gpu_name="NVIDIA A100", compute_capability="8.0")
    for h in (good, other_gpu):
        write_engine(cached_engine_path(h), h, b"engine")
    assert cached_engine_path(good) != cached_engine_path(other_gpu)
    found = find_cached_engine("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", "10.9.0")
    assert found == cached_engine_path(good)
    assert find_cached_engine("ab" * 32, "NVIDIA L4", "8.9", "10.9.0") is None
    assert find_cached_engine("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", "10.9.0", precision="int8") is None


def test_auto_selection_order(tmp_path, monkeypatch, blob_path):
    from samcell_rt.runtime.engines import onnx as onnx_engine

    monkeypatch.setattr(onnx_engine, "available", lambda name: False)
    monkeypatch.setattr(trt_engine, "available", lambda: False)
    assert resolve_engine("auto", blob_path) == ("cpu", blob_path)
    monkeypatch.setattr(onnx_engine, "available", lambda name: name == "cuda")
    assert resolve_engine("auto", blob_path) == ("cuda", blob_path)
    cached = tmp_path / "m.engine"
    monkeypatch.setattr("samcell_rt.runtime.engines.cached_trt_engine", lambda model: cached)
    assert resolve_engine("auto", blob_path) == ("tensorrt", cached)
    assert resolve_engine("tensorrt", cached) == ("tensorrt", cached)
    with pytest.raises(ValueError, match="is a TensorRT engine"):
        resolve_engine("cpu", cached)


def test_named_tensorrt_without_engine_or_library_is_an_error(blob_path, monkeypatch):
    monkeypatch.setattr(trt_engine, "available", lambda: False)
    with pytest.raises(EngineUnavailableError, match="samcell-rt build-engine"):
        open_engine(blob_path, "tensorrt")


@pytest.mark.gpu
def test_tensorrt_engine_on_a_gpu(tmp_path, blob_path):
    if not trt_engine.available():
        pytest.skip("TensorRT, cuda-python or a CUDA GPU is missing")
    from samcell_rt.export.tensorrt import build_engine

    report = build_engine(blob_path, tmp_path / "blob.engine", precision="fp16", max_batch=4, opt_batch=2)
    engine = open_engine(report.path, "tensorrt")
    import numpy as np

    out = engine.run(np.zeros((6, 1, 256, 256), np.uint8))  # more than max batch: chunked
    assert out.shape == (6, 1, 256, 256)
