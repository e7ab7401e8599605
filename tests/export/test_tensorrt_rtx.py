"""Real TensorRT-RTX builds (no GPU needed, no replaced calls): engines, header, cache, refusal, fp16 size."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("tensorrt_rtx_bindings", reason="needs the 'tensorrt-rtx' extra (TensorRT-RTX wheels)")

from click.testing import CliRunner  # noqa: E402

from samcell_rt.cli import main  # noqa: E402
from samcell_rt.export.model import tiny_config  # noqa: E402
from samcell_rt.export.tensorrt import BuildSettings, build_engine  # noqa: E402
from samcell_rt.runtime.contract import file_sha256  # noqa: E402
from samcell_rt.runtime.engines import resolve_engine  # noqa: E402
from samcell_rt.runtime.engines import tensorrt as trt_engine  # noqa: E402
from samcell_rt.runtime.engines.trt_header import EngineMismatchError, cached_engine_path, read_header  # noqa: E402

TARGETS = ("8.6", "8.9")  # two targets keep builds short; the default is every one TensorRT-RTX supports


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("samcell-home")


@pytest.fixture(autouse=True)
def _user_cache(home, monkeypatch):
    monkeypatch.setenv("SAMCELL_RT_HOME", str(home))


@pytest.fixture(scope="module")
def engines(tiny_onnx, home):
    """fp32 and fp16 TensorRT-RTX engines of the tiny model, built into the user engine cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAMCELL_RT_HOME", str(home))
        return {precision: build_engine(tiny_onnx, settings=BuildSettings(precision=precision, runtime="rtx",
                                                                          compute_capabilities=TARGETS, max_batch=8,
                                                                          opt_batch=4))
                for precision in ("fp32", "fp16")}


def test_rtx_engines_carry_the_header_and_say_they_are_unverified_without_a_gpu(engines, tiny_onnx):
    import tensorrt_rtx_bindings as trt

    for precision, report in engines.items():
        header, offset = read_header(report.path)
        assert report.path == cached_engine_path(header)
        assert (header.flavour, header.version, header.gpu_name) == ("tensorrt-rtx", trt.__version__, "")
        assert header.compute_capabilities == TARGETS and header.precision == precision
        assert (header.min_batch, header.opt_batch, header.max_batch, header.tile) == (1, 4, 8, 256)
        assert header.onnx_sha256 == file_sha256(tiny_onnx)
        assert header.model_props["samcell.model_name"] == "tiny-test"
        assert "engine unverified" in header.verification
        assert report.size - offset > 100_000  # a real serialized engine follows the header


def test_fp16_engine_holds_fp16_weights_from_a_checked_fp16_graph(engines, tiny_onnx):
    fp16 = engines["fp16"]
    assert fp16.graph.source == "converted"
    assert fp16.errors["fp16-graph-vs-fp32"] <= 1e-2
    assert read_header(fp16.path)[0].model_props["samcell.precision"] == "fp16"
    # the tiny model's weights are small next to an engine's fixed part: check the weights halved
    assert engines["fp32"].size - fp16.size >= 0.4 * fp32_weight_bytes(tiny_onnx)
    assert fp16.size < engines["fp32"].size


def fp32_weight_bytes(path) -> int:
    import numpy as np
    import onnx

    return sum(int(np.prod(i.dims)) * 4 for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT)


def test_second_build_is_a_cache_hit_and_auto_finds_the_engine_on_a_target_gpu(engines, tiny_onnx, monkeypatch):
    again = build_engine(tiny_onnx, settings=BuildSettings(precision="fp16", runtime="rtx", compute_capabilities=TARGETS,
                                                           max_batch=8, opt_batch=4))
    assert again.cached and again.path == engines["fp16"].path
    monkeypatch.setattr(trt_engine, "available", lambda: True)
    monkeypatch.setattr(trt_engine, "device_facts", lambda: ("NVIDIA GeForce RTX 4090", "8.9"))
    assert resolve_engine("auto", tiny_onnx) == ("tensorrt", engines["fp16"].path)
    monkeypatch.setattr(trt_engine, "device_facts", lambda: ("NVIDIA H100 80GB HBM3", "9.0"))
    assert resolve_engine("auto", tiny_onnx)[0] != "tensorrt"


@pytest.mark.parametrize("gpu, capability, message", [
    ("NVIDIA H100 80GB HBM3", "9.0", r"cannot target sm 9.0.*--engine cuda.*--runtime tensorrt"),
    ("NVIDIA GeForce RTX 2080", "7.5", r"built for compute capability 8.6, 8.9.*Rebuild it with: samcell-rt build-engine "
                                       r".*tiny.onnx --runtime rtx --precision fp16 --max-batch 8 --opt-batch 4 "
                                       r"--compute-capability 7.5"),
])
def test_engine_for_other_targets_is_refused_before_deserialising(engines, monkeypatch, gpu, capability, message):
    monkeypatch.setattr(trt_engine, "device_facts", lambda: (gpu, capability))
    with pytest.raises(EngineMismatchError, match=message):
        trt_engine.TensorRTEngine(engines["fp16"].path)


def test_stale_engine_is_refused_with_the_rebuild_command(engines, tmp_path, monkeypatch):
    import dataclasses

    from samcell_rt.runtime.engines.trt_header import write_engine

    header, offset = read_header(engines["fp32"].path)
    stale = tmp_path / "stale.engine"
    write_engine(stale, dataclasses.replace(header, version="1.6.0.0"), engines["fp32"].path.read_bytes()[offset:])
    monkeypatch.setattr(trt_engine, "device_facts", lambda: ("NVIDIA GeForce RTX 4090", "8.9"))
    with pytest.raises(EngineMismatchError, match=r"built with TensorRT-RTX 1.6.0.0, this is TensorRT-RTX .*--runtime rtx "
                                                  r"--precision fp32"):
        trt_engine.TensorRTEngine(stale)


def test_fp16_engine_from_the_checkpoint_and_from_an_fp16_export(tiny_onnx, tiny_checkpoint, tmp_path):
    from samcell_rt.export.onnx import export_model

    settings = BuildSettings(precision="fp16", runtime="rtx", compute_capabilities=("8.9",), max_batch=2, opt_batch=1)
    report = build_engine(tiny_onnx, tmp_path / "ckpt.engine",
                          replace(settings, checkpoint=tiny_checkpoint, config=tiny_config()))
    assert report.graph.source == "checkpoint" and report.errors["fp16-graph-vs-fp32"] <= 1e-2
    fp16_onnx = export_model(tiny_checkpoint, tmp_path / "tiny16.onnx", precision="fp16", config=tiny_config()).path
    given = build_engine(fp16_onnx, tmp_path / "given.engine", settings)
    assert given.graph.source == "given" and given.header.onnx_sha256 == file_sha256(fp16_onnx)


def test_build_engine_command(tiny_onnx, tmp_path):
    runner = CliRunner()
    out = tmp_path / "tiny32.engine"
    result = runner.invoke(main, ["build-engine", str(tiny_onnx), "--runtime", "rtx", "--precision", "fp32",
                                  "--compute-capability", "8.9", "--max-batch", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "TensorRT-RTX" in result.output and "engine unverified" in result.output and out.exists()
    bad = runner.invoke(main, ["build-engine", str(tiny_onnx), "--runtime", "rtx", "--compute-capability", "9.0",
                               "--out", str(tmp_path / "x.engine")])
    assert bad.exit_code == 2 and "cannot build fp16 engines for compute capability 9.0" in bad.output
    missing = runner.invoke(main, ["build-engine", "no-such-model", "--runtime", "rtx"])
    assert missing.exit_code == 2 and "no-such-model" in missing.output and "Traceback" not in missing.output


@pytest.mark.slow
def test_shipped_samcell_lite_engines(tmp_path):
    """The issue's acceptance check: both engines of the shipped model, fp16 under 70 % of fp32."""
    from samcell_rt.registry import resolve_model

    sizes = {p: build_engine(resolve_model("samcell-lite"), tmp_path / f"lite{p}.engine",
                             BuildSettings(precision=p, runtime="rtx")).size
             for p in ("fp32", "fp16")}
    assert sizes["fp16"] < 0.7 * sizes["fp32"]


@pytest.mark.skipif(trt_engine.available(), reason="this machine has a usable CUDA GPU")
def test_tensorrt_engine_without_a_usable_gpu_points_to_the_cpu(engines, tmp_path):
    """It used to say only "CUDA call failed with error 35"."""
    image = tmp_path / "a.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.zeros((64, 64), np.uint8))
    result = CliRunner().invoke(main, ["segment", str(image), "--model", str(engines["fp16"].path), "--engine",
                                       "tensorrt", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--engine cpu" in result.output and "GPU" in result.output, result.output
