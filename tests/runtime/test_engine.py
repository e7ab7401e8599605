"""The onnxruntime engine: metadata read, contract refusals with clear messages, engine selection."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from samcell_rt.errors import EngineUnavailableError, ModelError, SamcellWarning
from samcell_rt.runtime.contract import PROPS
from samcell_rt.runtime.engines import open_engine, resolve_engine
from samcell_rt.synthetic import blob_model


def test_reads_metadata_and_runs_dynamic_batch(blob_path):
    engine = open_engine(blob_path, "cpu")
    assert (engine.info.name, engine.info.tile, engine.info.peak_threshold, engine.info.fill_threshold) == \
        ("blob-test", 256, 0.47, 0.09)
    for batch in (1, 3):
        out = engine.run(np.zeros((batch, 1, 256, 256), np.uint8))
        assert out.shape == (batch, 1, 256, 256) and out.dtype == np.float32
    bright = engine.run(np.full((1, 1, 256, 256), 255, np.uint8))
    assert bright[0, 0, 128, 128] == pytest.approx(1 / (1 + np.exp(-8 * 0.25)), abs=1e-5)


def test_thresholds_from_metadata_are_the_segmenter_defaults(tmp_path):
    from samcell_rt import load_model

    path = blob_model(tmp_path / "m.onnx", props={PROPS["peak_threshold"]: "0.6", PROPS["fill_threshold"]: "0.2"})
    seg = load_model(str(path))
    assert (seg.peak, seg.fill) == (0.6, 0.2)
    assert load_model(str(path), peak=0.5).peak == 0.5


def test_missing_metadata_is_refused(tmp_path):
    path = blob_model(tmp_path / "m.onnx", props={PROPS["tile"]: None, PROPS["version"]: None})
    with pytest.raises(ModelError, match="samcell.version, samcell.tile"):
        open_engine(path)


def test_wrong_preprocess_is_refused(tmp_path):
    path = blob_model(tmp_path / "m.onnx", props={PROPS["preprocess"]: "other"})
    with pytest.raises(ModelError, match="preprocess 'other'"):
        open_engine(path)


def _identity_model(path, in_type, batch, props):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["tiles"], ["distance"], to=TensorProto.FLOAT)], "g",
        [helper.make_tensor_value_info("tiles", in_type, [batch, 1, 256, 256])],
        [helper.make_tensor_value_info("distance", TensorProto.FLOAT, [batch, 1, 256, 256])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("in_type, batch, message", [(TensorProto.FLOAT, "b", "uint8 input"),
                                                     (TensorProto.UINT8, 4, "dynamic batch")])
def test_broken_io_contract_is_refused(tmp_path, blob_path, in_type, batch, message):
    props = {p.key: p.value for p in onnx.load(blob_path).metadata_props}
    path = _identity_model(tmp_path / "bad.onnx", in_type, batch, props)
    with pytest.raises(ModelError, match=message):
        open_engine(path)


def test_unreadable_model_file(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        open_engine(tmp_path / "junk.onnx")


def test_engine_selection(blob_path, tmp_path, monkeypatch):

    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))  # an empty engine cache: no built TensorRT engine to find
    assert resolve_engine("cpu", blob_path) == ("cpu", blob_path)
    with pytest.raises(EngineUnavailableError, match="unknown engine"):
        resolve_engine("warp-drive", blob_path)


def test_auto_takes_the_first_engine_that_can_serve_the_model(monkeypatch, tmp_path, blob_path):
    """The table's order with each engine's availability faked: TensorRT (an engine built for this model
    and GPU), then CUDA, then OpenVINO (native bf16 that passed the guard), then the CPU."""
    from samcell_rt.runtime import cpu
    from samcell_rt.runtime.engines import bf16_guard
    from samcell_rt.runtime.engines import onnx as ort_engine
    from samcell_rt.runtime.engines import openvino as ov_engine
    from samcell_rt.runtime.engines import tensorrt as trt_engine

    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path))
    monkeypatch.setattr(bf16_guard, "_SEEN", {})
    agrees = bf16_guard.Agreement(seg=1.0, det=1.0, cells_fp32=10, cells_bf16=10, max_map_difference=0.001)
    monkeypatch.setattr(ov_engine, "bf16_agreement", lambda path, tile: agrees)  # the guard passes without segmenting
    monkeypatch.setattr(ov_engine, "available", lambda: True)
    built = tmp_path / "built.engine"
    gpu = {"cuda": False, "trt": False}
    monkeypatch.setattr(ort_engine, "available", lambda engine: engine == "cpu" or gpu["cuda"])
    monkeypatch.setattr(trt_engine, "locate", lambda engine, model: built if gpu["trt"] else None)
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"flags": "avx2 avx512f"})
    assert resolve_engine("auto", blob_path) == ("cpu", blob_path)  # no GPU, no native bf16
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"flags": "avx2 avx512f avx512_bf16"})
    with pytest.warns(SamcellWarning, match="guard .* passes"):  # the verdict is said once, where it was measured
        assert resolve_engine("auto", blob_path) == ("openvino", blob_path)
    gpu["cuda"] = True
    assert resolve_engine("auto", blob_path) == ("cuda", blob_path)
    gpu["trt"] = True
    assert resolve_engine("auto", blob_path) == ("tensorrt", built)


def test_requested_gpu_engine_without_gpu_is_an_error(blob_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    with pytest.raises(EngineUnavailableError, match="cuda"):
        open_engine(blob_path, "cuda")


def test_engines_take_batch_and_pipelining_from_their_table_row(blob_path, monkeypatch):
    """The row is the one place these live: change it and the engine follows."""
    import dataclasses

    from samcell_rt.runtime.engines import table

    assert (open_engine(blob_path, "cpu").default_batch, open_engine(blob_path, "cpu").pipelined) == (1, False)
    monkeypatch.setitem(table.ROWS, "cpu", dataclasses.replace(table.ROWS["cpu"], default_batch=3, pipelined=True))
    engine = open_engine(blob_path, "cpu")
    assert (engine.default_batch, engine.pipelined) == (3, True)


def test_the_engine_table_imports_none_of_the_engines():
    """table.py is read by every engine module; importing an engine from it would loop back."""
    import ast

    from samcell_rt.runtime.engines import table

    tree = ast.parse(open(table.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {"." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"__future__", "dataclasses", "enum", "...errors"}


def test_flavours_and_precisions_are_the_strings_files_and_options_carry():
    """StrEnum members equal the plain strings in engine headers, model metadata and command lines."""
    from samcell_rt.runtime.engines import Flavour, Precision

    assert [str(p) for p in Precision] == ["fp32", "fp16", "bf16", "int8"]
    assert [str(f) for f in Flavour] == ["tensorrt", "tensorrt-rtx"]
    assert {"fp16": 1}[Precision.FP16] == 1 and Flavour.RTX == "tensorrt-rtx"
