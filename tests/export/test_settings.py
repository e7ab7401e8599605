"""The export's settings objects: the keyword form still reaches the right fields, names and profiles."""

from __future__ import annotations

import samcell_rt.export.onnx as export_module
from samcell_rt.export.onnx import ModelProps
from samcell_rt.export.tensorrt import BuildSettings
from samcell_rt.export.trt_network import Profile
from samcell_rt.runtime.engines.table import Precision


def test_export_onnx_keywords_reach_their_own_fields(monkeypatch):
    """train/adapt.py and registry.py still call the keyword form: a swapped peak/fill would store wrong thresholds."""
    calls = []
    monkeypatch.setattr(export_module, "export_model", lambda *args, **kwargs: calls.append((args, kwargs)))
    export_module.export_onnx("c.pt", "o.onnx", precision="fp16", opset=18, name="n", version="3", tile=512,
                              config="cfg", peak=0.7, fill=0.2, diameter=(20.0, (10.0, 30.0)), extra={"k": "v"})
    props = ModelProps(name="n", version="3", tile=512, peak=0.7, fill=0.2, diameter=(20.0, (10.0, 30.0)))
    assert calls == [(("c.pt", "o.onnx", props), {"precision": "fp16", "opset": 18, "config": "cfg", "extra": {"k": "v"}})]


def test_unnamed_props_take_the_checkpoint_stem_and_named_ones_keep_theirs():
    assert ModelProps(peak=0.3).named("runs/a/samcell-tiny.pt") == ModelProps(name="samcell-tiny", peak=0.3)
    assert ModelProps(name="mine").named("runs/a/samcell-tiny.pt").name == "mine"


def test_build_profile_tunes_for_at_most_the_largest_batch():
    assert BuildSettings(max_batch=4, opt_batch=8).profile(512) == Profile(1, 4, 4, 512)
    assert BuildSettings().profile(256) == Profile(1, 8, 32, 256)


def test_precision_values_are_the_strings_stored_in_files():
    """Enum members go into metadata and headers unchanged: equal to, and formatted as, their values."""
    assert [str(p) for p in Precision] == ["fp32", "fp16", "bf16", "int8"]
    assert f"{Precision.FP16}" == "fp16" and Precision.INT8 == "int8"
