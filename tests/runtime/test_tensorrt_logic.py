"""TensorRT engine header, cache and selection logic, and the full-TensorRT builder's control flow with
TensorRT's calls replaced (it needs a GPU). Real TensorRT-RTX builds are in tests/export/test_tensorrt_rtx.py."""

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
    base = EngineHeader(flavour="tensorrt", version="10.9.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capabilities=("9.0",),
                        precision="fp16", min_batch=1, opt_batch=8, max_batch=32, tile=256, onnx_sha256="ab" * 32,
                        source="model.onnx", model_props={"samcell.model_name": "m"})
    return dataclasses.replace(base, **changes)


def rtx_header(**changes) -> EngineHeader:
    return header(flavour="tensorrt-rtx", version="1.7.1.116", gpu_name="", compute_capabilities=("8.6", "8.9"), **changes)


def test_header_roundtrip_keeps_engine_bytes(tmp_path):
    write_engine(tmp_path / "e.engine", header(), b"\x00serialized-engine\xff")
    read, offset = read_header(tmp_path / "e.engine")
    assert read == header()
    assert (tmp_path / "e.engine").read_bytes()[offset:] == b"\x00serialized-engine\xff"


def test_plain_tensorrt_file_without_header_is_refused(tmp_path):
    (tmp_path / "raw.engine").write_bytes(b"ftrt" + b"\0" * 64)
    with pytest.raises(EngineMismatchError, match="no header"):
        read_header(tmp_path / "raw.engine")


def test_old_header_format_is_refused_with_the_rebuild_hint(tmp_path):
    (tmp_path / "old.engine").write_bytes(b"SAMCELL-TRT\x01" + b"\0" * 64)
    with pytest.raises(EngineMismatchError, match="older samcell-rt.*build-engine"):
        read_header(tmp_path / "old.engine")


@pytest.mark.parametrize("field, value", [("gpu_name", "NVIDIA A100"), ("compute_capabilities", ("8.0",)),
                                          ("version", "10.3.0"), ("precision", "fp32"), ("flavour", "tensorrt-rtx"),
                                          ("onnx_sha256", "cd" * 32), ("max_batch", 64)])
def test_cache_key_depends_on_every_validity_fact(field, value):
    assert header().cache_key() != header(**{field: value}).cache_key()


def test_cache_key_ignores_facts_that_do_not_affect_validity():
    assert header().cache_key() == header(opt_batch=4, source="elsewhere.onnx", verification="x").cache_key()


def test_foreign_or_stale_engine_is_refused_with_the_rebuild_command():
    with pytest.raises(EngineMismatchError, match=r"built for NVIDIA H100.*this GPU is NVIDIA L4.*"
                                                  r"samcell-rt build-engine model.onnx --runtime tensorrt --precision fp16"):
        header().check("NVIDIA L4", "8.9", "10.9.0")
    with pytest.raises(EngineMismatchError, match="TensorRT 10.9.0, this is TensorRT 10.10.0"):
        header().check("NVIDIA H100 80GB HBM3", "9.0", "10.10.0")
    with pytest.raises(EngineMismatchError, match="another ONNX model"):
        header().check("NVIDIA H100 80GB HBM3", "9.0", "10.9.0", onnx_sha256="ef" * 32)
    header().check("NVIDIA H100 80GB HBM3", "9.0", "10.9.0", onnx_sha256="ab" * 32)  # matches: no error


def test_rtx_engine_runs_on_any_gpu_of_its_targets_and_names_the_fix_elsewhere():
    rtx_header().check("NVIDIA GeForce RTX 4090", "8.9", "1.7.1.116")  # any GPU name of a target capability
    rtx_header().check("NVIDIA RTX A6000", "8.6", "1.7.1.116")
    with pytest.raises(EngineMismatchError, match=r"built for compute capability 8.6, 8.9, this GPU is NVIDIA GeForce "
                                                  r"RTX 5090 \(sm 12.0\).*--runtime rtx .*--compute-capability 12.0"):
        rtx_header().check("NVIDIA GeForce RTX 5090", "12.0", "1.7.1.116", rtx_capabilities=("8.6", "8.9", "12.0"))
    with pytest.raises(EngineMismatchError, match=r"cannot target sm 9.0.*--engine cuda.*--runtime tensorrt"):
        rtx_header().check("NVIDIA H100 80GB HBM3", "9.0", "1.7.1.116", rtx_capabilities=("8.6", "8.9", "12.0"))
    with pytest.raises(EngineMismatchError, match="TensorRT-RTX 1.7.1.116, this is TensorRT-RTX 1.8.0"):
        rtx_header().check("NVIDIA GeForce RTX 4090", "8.9", "1.8.0")


def test_cache_lookup_finds_only_valid_engines(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    good, other_gpu = header(), header(gpu_name="NVIDIA A100", compute_capabilities=("8.0",))
    for h in (good, other_gpu):
        write_engine(cached_engine_path(h), h, b"engine")
    assert cached_engine_path(good) != cached_engine_path(other_gpu)
    full = {"tensorrt": "10.9.0"}
    found = find_cached_engine("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", full)
    assert found == cached_engine_path(good)
    assert find_cached_engine("ab" * 32, "NVIDIA L4", "8.9", full) is None
    assert find_cached_engine("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", full, precision="int8") is None


def test_cache_lookup_prefers_full_tensorrt_and_skips_flavours_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    rtx, full = rtx_header(), header(gpu_name="NVIDIA L40S", compute_capabilities=("8.9",))
    for h in (rtx, full):
        write_engine(cached_engine_path(h), h, b"engine")
    both = {"tensorrt": "10.9.0", "tensorrt-rtx": "1.7.1.116"}
    assert find_cached_engine("ab" * 32, "NVIDIA L40S", "8.9", both) == cached_engine_path(full)
    assert find_cached_engine("ab" * 32, "NVIDIA L40S", "8.9", {"tensorrt-rtx": "1.7.1.116"}) == cached_engine_path(rtx)
    assert find_cached_engine("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", both) is None


def test_auto_selection_order(tmp_path, monkeypatch, blob_path):
    from samcell_rt.runtime.engines import onnx as onnx_engine
    from samcell_rt.runtime.engines import openvino as ov_engine

    monkeypatch.setattr(onnx_engine, "available", lambda name: False)
    monkeypatch.setattr(trt_engine, "available", lambda: False)
    monkeypatch.setattr(ov_engine, "available", lambda: False)  # no bf16 engine either: the GPU order alone
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
    if not trt_engine.available() or "tensorrt" not in trt_engine.installed_flavours():
        pytest.skip("the full TensorRT, cuda-python or a CUDA GPU is missing")
    from samcell_rt.export.tensorrt import BuildSettings, build_engine

    report = build_engine(blob_path, tmp_path / "blob.engine",
                          BuildSettings(precision="fp16", max_batch=4, opt_batch=2, runtime="tensorrt"))
    engine = open_engine(report.path, "tensorrt")
    import numpy as np

    out = engine.run(np.zeros((6, 1, 256, 256), np.uint8))  # more than max batch: chunked
    assert out.shape == (6, 1, 256, 256)


@pytest.mark.gpu
def test_rtx_engine_on_a_gpu_runs_or_is_refused_by_compute_capability(tmp_path, blob_path, monkeypatch):
    """On an RTX-class GPU the engine runs and its JIT cache is kept; elsewhere (H100: 9.0) it is refused."""
    if not trt_engine.available() or "tensorrt-rtx" not in trt_engine.installed_flavours():
        pytest.skip("TensorRT-RTX, cuda-python or a CUDA GPU is missing")
    import numpy as np

    from samcell_rt.export.tensorrt import BuildSettings, build_engine

    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    report = build_engine(blob_path, tmp_path / "blob.engine",
                          BuildSettings(precision="fp16", max_batch=4, opt_batch=2, runtime="rtx"))
    capability = trt_engine.device_facts()[1]
    if capability not in report.header.compute_capabilities:
        with pytest.raises(EngineMismatchError, match=f"sm {capability}"):
            open_engine(report.path, "tensorrt")
        return
    assert report.errors["engine"] <= 1e-2
    engine = open_engine(report.path, "tensorrt")
    assert engine.run(np.zeros((6, 1, 256, 256), np.uint8)).shape == (6, 1, 256, 256)
    assert engine.runtime_cache.path.exists()
    assert open_engine(report.path, "tensorrt").runtime_cache.loaded  # second start reuses the compiled kernels


class _FakeRuntimeCache:
    """Stands in for TensorRT-RTX's runtime config + cache objects."""

    def __init__(self, blob=b"") -> None:
        self.blob, self.loaded_blob = blob, None

    def create_runtime_config(self):
        return self

    def create_runtime_cache(self):
        return self

    def set_runtime_cache(self, cache) -> bool:
        return True

    def deserialize(self, blob) -> bool:
        self.loaded_blob = bytes(blob)
        return True

    def serialize(self):
        return self.blob


def test_rtx_runtime_cache_is_saved_once_per_batch_size_and_reloaded(tmp_path):
    from samcell_rt.runtime.engines.rtx_cache import RuntimeCache

    path = tmp_path / "engines" / "runtime-x.cache"
    first = RuntimeCache(_FakeRuntimeCache(b"kernels-v1"), path)
    assert not first.loaded and not path.exists()
    first.after_run(8)
    assert path.read_bytes() == b"kernels-v1"
    first.cache.blob = b"kernels-v2"
    first.after_run(8)  # same batch size: nothing new to save
    assert path.read_bytes() == b"kernels-v1"
    first.after_run(3)
    assert path.read_bytes() == b"kernels-v2"
    second = RuntimeCache(_FakeRuntimeCache(), path)
    assert second.loaded and second.cache.loaded_blob == b"kernels-v2"


class _FakeEngine:
    """Stands in for a built TensorRT engine: returns the fp32 maps plus a chosen error."""

    errors: list[float] = []

    def __init__(self, path) -> None:
        self.error = _FakeEngine.errors.pop(0)

    def run(self, tiles):
        from samcell_rt.export.onnx import graph_maps

        return graph_maps(_FakeEngine.onnx, tiles) + self.error


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

    def fake_build(onnx_path, precision, profile, workspace, cache, calibrator, pin):
        builds.append(pin)
        return b"engine-bytes", (["ln_0", "softmax_1", "sigmoid_out"] if pin else [])

    monkeypatch.setattr(builder, "build_full", fake_build)
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    _FakeEngine.onnx = blob_path
    return builder, builds


def test_fp16_guard_rebuilds_with_fp32_layers_and_reports_both_errors(fake_tensorrt, blob_path):
    builder, builds = fake_tensorrt
    _FakeEngine.errors = [0.05, 0.004]  # default build over 1e-2, pinned build within
    report = builder.build_engine(blob_path, settings=builder.BuildSettings(precision="fp16", runtime="tensorrt"))
    assert builds == [False, True]
    assert report.errors == {"default": pytest.approx(0.05, abs=1e-6), "fp32-pinned": pytest.approx(0.004, abs=1e-6)}
    header, offset = read_header(report.path)
    assert header.fp32_layers == ["ln_0", "softmax_1", "sigmoid_out"]
    assert header.max_abs_error == pytest.approx(0.004, abs=1e-6)
    assert report.path == cached_engine_path(header)  # default destination: the engine cache
    assert report.path.read_bytes()[offset:] == b"engine-bytes"
    assert header.flavour == "tensorrt" and header.gpu_name == "NVIDIA H100 80GB HBM3"
    assert header.verification == "engine checked on NVIDIA H100 80GB HBM3"


def test_engine_failing_the_guard_is_never_written(fake_tensorrt, blob_path, tmp_path):
    from samcell_rt.export.tensorrt import BuildError

    builder, builds = fake_tensorrt
    _FakeEngine.errors = [0.2, 0.03]
    with pytest.raises(BuildError, match=r"default 0.2, fp32-pinned 0.03"):
        builder.build_engine(blob_path, tmp_path / "x.engine", builder.BuildSettings(precision="fp16", runtime="tensorrt"))
    assert not (tmp_path / "x.engine").exists()


def test_tensorrt_engine_batches_by_its_row_or_else_its_profile(tmp_path, blob_path, monkeypatch):
    """The row says None (the engine's largest batch, which its profile was built for); a number there wins."""
    import sys
    import types

    from samcell_rt.runtime.contract import read_props
    from samcell_rt.runtime.engines import table

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            self.level = level

    fake = types.SimpleNamespace(__version__="10.9.0", Logger=Logger,
                                 Runtime=lambda log: types.SimpleNamespace(deserialize_cuda_engine=lambda blob: object()))
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_engine, "device_facts", lambda: ("NVIDIA H100 80GB HBM3", "9.0"))
    write_engine(tmp_path / "m.engine", header(model_props=read_props(blob_path)), b"engine")
    engine = trt_engine.TensorRTEngine(tmp_path / "m.engine")
    assert (engine.max_batch, engine.default_batch, engine.pipelined) == (32, 32, True)
    monkeypatch.setitem(table.ROWS, "tensorrt", dataclasses.replace(table.ROWS["tensorrt"], default_batch=4))
    assert trt_engine.TensorRTEngine(tmp_path / "m.engine").default_batch == 4
