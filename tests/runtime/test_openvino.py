"""The OpenVINO engine: its table row, `auto`'s choice on faked CPU flags, the bf16 accuracy guard,
thread safety, batching, threads and the compiled-model cache."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from samcell_rt.errors import EngineUnavailableError, ModelError
from samcell_rt.runtime import cpu
from samcell_rt.runtime.engines import CHOICES, ROWS, TABLE, bf16_guard, open_engine, resolve_engine
from samcell_rt.runtime.engines import onnx as ort_engine
from samcell_rt.runtime.engines import openvino as ov_engine
from samcell_rt.runtime.engines import tensorrt as trt_engine
from samcell_rt.runtime.engines.bf16_guard import Agreement
from samcell_rt.runtime.engines.openvino import OpenVinoEngine
from samcell_rt.synthetic import synthetic_cells
from tests.helpers import in_threads
from tests.runtime.planted import cell_losing_model

needs_openvino = pytest.mark.skipif(not ov_engine.available(), reason="OpenVINO is not installed (extra 'openvino')")
NATIVE_BF16 = cpu.native_bf16()  # this machine's, read before any test fakes the flags
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has neither AMX nor AVX512-BF16")
ZEN5_FLAGS = "fpu avx2 avx512f avx512_bf16 avx512_vnni avx_vnni"  # AMD Zen 4/5: native bf16, no AMX
SAPPHIRE_RAPIDS_FLAGS = "fpu avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_bf16 amx_int8"
SKYLAKE_FLAGS = "fpu avx2 avx512f avx512_vnni"  # AVX-512 without bf16: bf16 would be emulated
AGREES = Agreement(1.0, 1.0, 10, 10, 0.001)  # what the guard finds for a model whose bf16 keeps the cells
DISAGREES = Agreement(0.8, 0.9, 10, 8, 0.05)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A fresh user cache and no verdicts remembered from other tests; no GPU engine in `auto`."""
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(bf16_guard, "_SEEN", {})
    monkeypatch.setattr(ort_engine, "available", lambda engine: engine == "cpu")
    monkeypatch.setattr(trt_engine, "available", lambda: False)


def fake_flags(monkeypatch, flags: str) -> None:
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Test CPU", "flags": flags})


def fake_guard(monkeypatch, found: Agreement) -> list:
    """The guard finds `found` without segmenting; returns the list of models it measured."""
    measured = []
    monkeypatch.setattr(ov_engine, "bf16_agreement", lambda path, tile: measured.append(path) or found)
    return measured


def tiles_of(image: np.ndarray, tile: int = 256) -> np.ndarray:
    """(N, 1, T, T) enhanced uint8 tiles of an image, as the segmenter hands them to an engine."""
    from samcell_rt.runtime.preprocess import enhance_tiles, to_uint8
    from samcell_rt.runtime.tiling import extract_tiles, tile_grid

    image = to_uint8(image)
    return enhance_tiles(extract_tiles(image, tile_grid(*image.shape, tile=tile)))[:, None]


GUARD_TILES = tiles_of(synthetic_cells((300, 260), count=5)[0])


def test_engine_row():
    row = ROWS["openvino"]
    assert (row.module, row.default_batch, row.pipelined, row.in_auto, row.suffixes) == \
        ("openvino", 1, False, True, (".onnx",))
    assert "openvino" in CHOICES and "extra 'openvino'" in row.needs
    auto_order = [r.name for r in TABLE if r.in_auto]
    assert auto_order == ["tensorrt", "cuda", "openvino", "cpu"]


@pytest.mark.parametrize("flags, native", [(ZEN5_FLAGS, True), (SAPPHIRE_RAPIDS_FLAGS, True),
                                           (SKYLAKE_FLAGS, False), ("", False)])
def test_native_bf16_from_flags(monkeypatch, flags, native):
    fake_flags(monkeypatch, flags)
    assert cpu.native_bf16() is native


@needs_openvino
@pytest.mark.parametrize("flags, engine", [(ZEN5_FLAGS, "openvino"), (SAPPHIRE_RAPIDS_FLAGS, "openvino"),
                                           (SKYLAKE_FLAGS, "cpu")])
def test_auto_takes_openvino_only_with_native_bf16(monkeypatch, blob_path, flags, engine):
    fake_flags(monkeypatch, flags)
    measured = fake_guard(monkeypatch, AGREES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guard says it measured
        assert resolve_engine("auto", blob_path) == (engine, blob_path)
    assert measured == ([blob_path] if engine == "openvino" else [])  # no guard run where bf16 is not native


@needs_openvino
def test_auto_skips_openvino_when_the_guard_fails_and_says_so_once(monkeypatch, blob_path):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    fake_guard(monkeypatch, DISAGREES)
    with pytest.warns(UserWarning, match=r"guard for blob-test 0 on this CPU: fails .*SEG 0\.800 < 0\.95.*running fp32"):
        assert resolve_engine("auto", blob_path) == ("cpu", blob_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_engine("auto", blob_path) == ("cpu", blob_path)  # verdict remembered, not said again


def test_auto_without_openvino_is_the_cpu_engine(monkeypatch, blob_path):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    monkeypatch.setattr(ov_engine, "available", lambda: False)
    assert resolve_engine("auto", blob_path) == ("cpu", blob_path)


def test_named_engine_without_openvino_says_how_to_install(monkeypatch, blob_path):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(EngineUnavailableError, match=r"extra 'openvino'"):
        open_engine(blob_path, "openvino")


def emulate_bf16(monkeypatch, model, twin) -> None:
    """Where this CPU has no bf16, OpenVINO computes fp32 whatever it is asked: `model` compiled "in bf16"
    becomes `twin` (its weights rounded as bf16 rounds them) compiled in fp32."""
    compile_model = ov_engine.compile_model

    def compile_emulated(path, precision, threads=None, cache=True):
        if path == model and precision == "bf16" and not NATIVE_BF16:
            return compile_model(twin, "fp32", threads, cache=False)
        return compile_model(path, precision, threads, cache)

    monkeypatch.setattr(ov_engine, "compile_model", compile_emulated)


def guard_cells(model) -> int:
    """Cells the cpu engine finds on the guard images at the model's own scale: the guard's fp32 count."""
    from samcell_rt.runtime.segmenter import Segmenter

    segmenter = Segmenter(model, engine="cpu", diameter="off")
    return sum(int(segmenter.segment(image).labels.max()) for image in bf16_guard.guard_images(256))


@needs_openvino
def test_auto_falls_back_with_one_warning_on_a_planted_model_whose_bf16_loses_the_cells(monkeypatch, tmp_path):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    model = cell_losing_model(tmp_path / "planted.onnx")
    emulate_bf16(monkeypatch, model, cell_losing_model(tmp_path / "rounded.onnx", weight=1.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_engine("auto", model) == ("cpu", model)
        assert open_engine(model, "openvino").precision == "fp32"  # named: runs, in fp32, not said again
        assert resolve_engine("auto", model) == ("cpu", model)
    (line,) = [str(w.message) for w in caught]
    (record,) = json.loads(bf16_guard.verdicts_path().read_text()).values()
    assert record["passed"] is False and record["cells_fp32"] == guard_cells(model) > 0
    assert (record["cells_bf16"], record["seg"], record["det"]) == (0, 0.0, 0.0)  # every cell lost
    assert f"SEG 0.000, DET 0.000, cells {record['cells_fp32']} -> 0" in line and "SEG 0.000 < 0.95" in line
    assert "\n" not in line and line.endswith("running fp32")


@needs_openvino
@needs_bf16
def test_guard_falls_back_to_fp32_on_the_planted_model_in_real_bf16(tmp_path):
    model = cell_losing_model(tmp_path / "planted.onnx")
    with pytest.warns(UserWarning, match="fails .*running fp32"):
        engine = open_engine(model, "openvino")
    assert engine.precision == "fp32"
    (record,) = json.loads(bf16_guard.verdicts_path().read_text()).values()
    assert record["passed"] is False and record["cells_bf16"] < 0.97 * record["cells_fp32"]
    np.testing.assert_allclose(engine.run(GUARD_TILES), open_engine(model, "cpu").run(GUARD_TILES), atol=1e-5)
    assert resolve_engine("auto", model)[0] == "cpu"


@needs_openvino
@needs_bf16
def test_guard_passes_a_model_whose_bf16_keeps_the_cells_and_it_runs_bf16(blob_path):
    with pytest.warns(UserWarning, match="passes"):
        engine = open_engine(blob_path, "openvino")
    assert engine.precision == "bf16"
    (record,) = json.loads(bf16_guard.verdicts_path().read_text()).values()
    assert record["passed"] is True and record["seg"] >= 0.95 and record["cells_fp32"] > 0


@needs_openvino
def test_verdict_is_cached_per_model_and_cpu(monkeypatch, blob_path):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    measured = fake_guard(monkeypatch, AGREES)
    with pytest.warns(UserWarning, match="passes"):
        assert ov_engine.choose_precision(blob_path) == "bf16"
    monkeypatch.setattr(bf16_guard, "_SEEN", {})  # as a new process: read from the user cache
    assert ov_engine.choose_precision(blob_path) == "bf16" and len(measured) == 1
    fake_flags(monkeypatch, SAPPHIRE_RAPIDS_FLAGS)  # another CPU: measured again
    with pytest.warns(UserWarning, match="passes"):
        assert ov_engine.choose_precision(blob_path) == "bf16" and len(measured) == 2
    assert len(json.loads(bf16_guard.verdicts_path().read_text())) == 2


@needs_openvino
@pytest.mark.skipif(NATIVE_BF16, reason="this CPU computes bf16 natively")
def test_without_native_bf16_an_engine_asked_for_bf16_says_it_computes_fp32(blob_path):
    assert OpenVinoEngine(blob_path, precision="bf16").precision == "fp32"


@needs_openvino
def test_without_native_bf16_the_engine_runs_fp32_and_matches_the_cpu_engine(monkeypatch, blob_path):
    fake_flags(monkeypatch, SKYLAKE_FLAGS)
    engine = open_engine(blob_path, "openvino")
    assert (engine.name, engine.precision, engine.info.name) == ("openvino", "fp32", "blob-test")
    tiles = GUARD_TILES
    np.testing.assert_allclose(engine.run(tiles), open_engine(blob_path, "cpu").run(tiles), atol=1e-5)
    assert not bf16_guard.verdicts_path().exists()


@needs_openvino
def test_compiled_model_cache_is_reused(monkeypatch, blob_path):
    fake_flags(monkeypatch, SKYLAKE_FLAGS)
    first = open_engine(blob_path, "openvino")
    assert not first.from_cache and list(ov_engine.compiled_dir().glob("*.blob"))
    second = open_engine(blob_path, "openvino")
    assert second.from_cache
    tiles = GUARD_TILES
    np.testing.assert_array_equal(first.run(tiles), second.run(tiles))


@needs_openvino
def test_threads_and_batch_size_are_honoured(monkeypatch, blob_path):
    from samcell_rt.runtime.segmenter import Segmenter

    fake_flags(monkeypatch, SKYLAKE_FLAGS)
    segmenter = Segmenter(blob_path, engine="openvino", batch_size=3, threads=1)
    assert segmenter.engine.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert (segmenter.engine_name, segmenter.engine_precision, segmenter.batch_size) == ("openvino", "fp32", 3)
    batches = []
    run = segmenter.engine.run
    monkeypatch.setattr(segmenter.engine, "run", lambda tiles: batches.append(len(tiles)) or run(tiles))
    segmenter.segment(synthetic_cells((520, 704), count=10)[0])  # 12 tiles
    assert batches == [3, 3, 3, 3]


@needs_openvino
def test_concurrent_threads_share_one_engine(monkeypatch, blob_path):
    from samcell_rt.runtime.segmenter import Segmenter

    fake_flags(monkeypatch, SKYLAKE_FLAGS)
    segmenter = Segmenter(blob_path, engine="openvino", batch_size=2)
    images = [synthetic_cells((400, 400), count=10, seed=s)[0] for s in range(4)]
    expected = [segmenter.segment(img).distance for img in images]
    got = in_threads(lambda i: segmenter.segment(images[i]).distance, 4)
    for i in range(4):
        np.testing.assert_array_equal(got[i], expected[i])


@needs_openvino
def test_hostile_model_files_are_refused_by_name(monkeypatch, tmp_path, blob_path):
    import onnx

    fake_flags(monkeypatch, SKYLAKE_FLAGS)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        open_engine(tmp_path / "junk.onnx", "openvino")
    model = onnx.load(blob_path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4  # a fixed batch breaks the contract
    onnx.save(model, tmp_path / "fixed.onnx")
    with pytest.raises(ModelError, match="fixed.onnx.*dynamic batch"):
        open_engine(tmp_path / "fixed.onnx", "openvino")


@needs_openvino
@pytest.mark.parametrize("flags, engine, precision", [(ZEN5_FLAGS, "openvino", "bf16" if NATIVE_BF16 else "fp32"),
                                                      (SKYLAKE_FLAGS, "cpu", "fp32")])
def test_segment_defaults_to_auto_and_says_which_engine_and_precision(monkeypatch, tmp_path, blob_path, flags, engine,
                                                                      precision):
    import tifffile
    from click.testing import CliRunner

    from samcell_rt.cli import main
    from samcell_rt.runs.outputs import RUN_JSON

    fake_flags(monkeypatch, flags)
    fake_guard(monkeypatch, AGREES)  # the blob model passes the guard; without native bf16 OpenVINO computes fp32
    tifffile.imwrite(tmp_path / "cells.tif", synthetic_cells((300, 260), count=5)[0])
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "cells.tif"), "-m", str(blob_path), "-o",
                                       str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"on engine {engine} ({precision})" in result.output
    run = json.loads((tmp_path / "out" / RUN_JSON).read_text())
    assert (run["engine"], run["precision"]) == (engine, precision)


@needs_openvino
def test_an_unwritable_user_cache_costs_time_not_the_run(monkeypatch, tmp_path, blob_path):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    (tmp_path / "file").write_text("a file where the cache folder would be")
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "file" / "home"))
    fake_guard(monkeypatch, AGREES)
    engine = open_engine(blob_path, "openvino", threads=1)
    assert engine.precision == ("bf16" if NATIVE_BF16 else "fp32") and not engine.from_cache
    assert engine.run(np.zeros((1, 1, 256, 256), np.uint8)).shape == (1, 1, 256, 256)


@needs_openvino
@pytest.mark.parametrize("content", ['["a list"]', '{"KEY": "not a record"}', '{"KEY": {"passed": true, '
                                     '"max_abs_error": null, "tolerance": 0.02}}'])
def test_lying_verdict_files_are_measured_again(monkeypatch, blob_path, content):
    fake_flags(monkeypatch, ZEN5_FLAGS)
    key = bf16_guard.guard_key(ov_engine.model_sha256(blob_path), ov_engine._openvino().__version__)
    bf16_guard.verdicts_path().parent.mkdir(parents=True)
    bf16_guard.verdicts_path().write_text(content.replace("KEY", key.replace("\\", "\\\\")))
    measured = fake_guard(monkeypatch, DISAGREES)
    with pytest.warns(UserWarning, match="fails .*measured now"):
        assert ov_engine.choose_precision(blob_path) == "fp32"
    assert measured == [blob_path]
