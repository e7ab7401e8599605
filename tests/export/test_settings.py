"""The export's settings objects: names and profiles."""

from __future__ import annotations

from samcell_rt.export.onnx import ModelProps
from samcell_rt.export.tensorrt import BuildSettings
from samcell_rt.export.trt_network import Profile
from samcell_rt.runtime.engines.table import Precision


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
