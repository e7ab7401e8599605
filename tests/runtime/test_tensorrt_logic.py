"""TensorRT engine header, cache and selection logic: everything that needs no GPU."""

from __future__ import annotations

import dataclasses

import pytest

from samcell_rt.errors import EngineUnavailableError
from samcell_rt.runtime.engines import open_engine, resolve_engine
from samcell_rt.runtime.engines import tensorrt as trt_engine
from samcell_rt.runtime.engines.trt_header import (
    EngineHeader,
    EngineMismatchError,
    cached_engine_path,
    find_cached_engine,
    read_header,
    write_engine,
)


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
    monkeypatch.setattr(trt_engine, "locate", lambda name, model: cached)
    assert resolve_engine("auto", blob_path) == ("tensorrt", cached)
    assert resolve_engine("tensorrt", cached) == ("tensorrt", cached)
    with pytest.raises(EngineUnavailableError, match="m.engine is a .engine file.*use --engine tensorrt or auto"):
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


class _FakeEngine:
    """Stands in for a built TensorRT engine: returns the fp32 maps plus a chosen error."""

    errors: list[float] = []

    def __init__(self, path) -> None:
        self.error = _FakeEngine.errors.pop(0)

    def run(self, tiles):
        from samcell_rt.export.tensorrt import _reference_maps

        return _reference_maps(_FakeEngine.onnx, tiles) + self.error


@pytest.fixture()
def fake_tensorrt(monkeypatch, blob_path, tmp_path):
    """The builder's control flow with TensorRT's calls replaced (no GPU here)."""
    import sys
    import types

    import samcell_rt.export.tensorrt as builder

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr(trt_engine, "device_facts", lambda: ("NVIDIA H100 80GB HBM3", "9.0"))
    monkeypatch.setattr(trt_engine, "TensorRTEngine", _FakeEngine)
    builds = []

    def fake_build(onnx_path, precision, min_batch, opt_batch, max_batch, tile, workspace, cache, calibrator, pin):
        builds.append(pin)
        return b"engine-bytes", (["ln_0", "softmax_1", "sigmoid_out"] if pin else [])

    monkeypatch.setattr(builder, "_build", fake_build)
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    _FakeEngine.onnx = blob_path
    return builder, builds


def test_fp16_guard_rebuilds_with_fp32_layers_and_reports_both_errors(fake_tensorrt, blob_path):
    builder, builds = fake_tensorrt
    _FakeEngine.errors = [0.05, 0.004]  # default build over 1e-2, pinned build within
    report = builder.build_engine(blob_path, precision="fp16")
    assert builds == [False, True]
    assert report.errors == {"default": pytest.approx(0.05, abs=1e-6), "fp32-pinned": pytest.approx(0.004, abs=1e-6)}
    header, offset = read_header(report.path)
    assert header.fp32_layers == ["ln_0", "softmax_1", "sigmoid_out"]
    assert header.max_abs_error == pytest.approx(0.004, abs=1e-6)
    assert report.path == cached_engine_path(header)  # default destination: the engine cache
    assert report.path.read_bytes()[offset:] == b"engine-bytes"


def test_engine_failing_the_guard_is_never_written(fake_tensorrt, blob_path, tmp_path):
    from samcell_rt.export.tensorrt import BuildError

    builder, builds = fake_tensorrt
    _FakeEngine.errors = [0.2, 0.03]
    with pytest.raises(BuildError, match=r"default 0.2, fp32-pinned 0.03"):
        builder.build_engine(blob_path, tmp_path / "x.engine", precision="fp16")
    assert not (tmp_path / "x.engine").exists()
