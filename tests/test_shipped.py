"""Shipped models stored as weights + a weight-free graph, made into complete ONNX files in the user cache.

A tiny SAM is exported with `export_weight_free` and registered as a shipped model for the test
(`samcell_rt.shipped` reads its table and folder at call time), so every case runs in seconds.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="making a shipped model needs the 'export' extra")

from samcell_rt import shipped  # noqa: E402
from samcell_rt.errors import ModelError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A seeded tiny SAM's checkpoint, its shipped files and its old-style (slimmed, folded) export."""
    import torch

    from samcell_rt.export.model import random_sam, tiny_config
    from samcell_rt.export.onnx import ModelProps, export_model
    from samcell_rt.export.weightfree import export_weight_free

    root = tmp_path_factory.mktemp("shipped")
    checkpoint = root / "tiny.pt"
    torch.save(random_sam(tiny_config(256), seed=3).state_dict(), checkpoint)
    made = export_weight_free(checkpoint, root / "models", ModelProps(name="tiny", version="7", peak=0.45, fill=0.1),
                              config=tiny_config(256))
    export_model(checkpoint, root / "folded.onnx", ModelProps(name="tiny", version="7"), config=tiny_config(256))
    return root, made, checkpoint


@pytest.fixture
def tiny(tiny_files, tmp_path, monkeypatch):
    """`tiny` (and `tiny-int8`) registered as shipped, with a fresh user cache."""
    root, made, _ = tiny_files
    monkeypatch.setenv("SAMCELL_RT_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", root / "models")
    monkeypatch.setitem(shipped.SHIPPED, "tiny", shipped.ShippedFiles(made.weights_sha256, made.graph_sha256))
    monkeypatch.setitem(shipped.VARIANTS, "tiny-int8", ("tiny", "int8"))
    return made


def maps(path, tiles):
    from samcell_rt.export.onnx import graph_maps

    return graph_maps(path, tiles)


def test_the_graph_carries_no_weights_and_names_each_parameter(tiny):
    import onnx

    graph = onnx.load(str(tiny.graph), load_external_data=False)
    params = [i for i in graph.graph.initializer if i.name.startswith(shipped.PARAM_PREFIX)]
    sources = [{e.key: e.value for e in i.external_data}.get(shipped.WEIGHT_SOURCE) for i in params]
    assert params and all(s == i.name.removeprefix(shipped.PARAM_PREFIX) and not i.raw_data for s, i in zip(sources, params))
    assert "mask_decoder.transformer.layers.0.self_attn.q_proj.weight" in sources
    constants = sum(len(i.raw_data) for i in graph.graph.initializer if i not in params)
    assert constants < 0.01 * tiny.weights.stat().st_size


def test_materialised_file_equals_the_folded_export_and_keeps_the_metadata(tiny, tiny_files):
    from samcell_rt.export.onnx import verification_tiles
    from samcell_rt.runtime.contract import read_props

    path = shipped.materialise("tiny")
    tiles = verification_tiles(256, seed=5)
    old = tiny_files[0] / "folded.onnx"
    assert np.abs(maps(path, tiles) - maps(old, tiles)).max() < 1e-5
    assert maps(path, tiles).std() > 1e-3  # the maps depend on the input: the comparison means something
    props = read_props(path)
    assert props["samcell.model_name"] == "tiny" and props["samcell.version"] == "7"
    assert (props["samcell.peak_threshold"], props["samcell.fill_threshold"]) == ("0.45", "0.1")
    assert props[shipped.WEIGHTS_PROP] == props["samcell.source_sha256"] == tiny.weights_sha256


def test_second_use_reuses_the_cached_file(tiny, monkeypatch):
    path = shipped.materialise("tiny")
    stamp = path.stat().st_mtime_ns

    def refuse(*_):
        raise AssertionError("rebuilt although the cached file is intact")

    monkeypatch.setattr(shipped, "fold_constants", refuse)
    assert shipped.materialise("tiny") == path and path.stat().st_mtime_ns == stamp


def test_a_damaged_cached_file_is_rebuilt(tiny):
    path = shipped.materialise("tiny")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # e.g. a disk-full copy
    assert shipped.materialise("tiny") == path and path.read_bytes() == whole


@pytest.mark.parametrize("damage", ["not utf-8", "a folder"])
def test_a_damaged_sha256_record_is_rebuilt(tiny, damage):
    import shutil

    path = shipped.materialise("tiny")
    whole, record = path.read_bytes(), shipped._record(path)
    good = record.read_text()
    if damage == "a folder":
        record.unlink()
        (record / "inner").mkdir(parents=True)
    else:
        record.write_bytes(b"\xff\xfe\x00garbage")
    assert shipped.materialise("tiny") == path and path.read_bytes() == whole
    assert record.is_file() and record.read_text() == good
    shutil.rmtree(path.parent)  # a folder where the model file belongs is cleared as well
    path.mkdir(parents=True)
    assert shipped.materialise("tiny") == path and path.read_bytes() == whole


def test_changed_weights_are_refused_with_the_file_named(tiny, tmp_path, monkeypatch):
    tampered = tmp_path / "models"
    tampered.mkdir()
    for source in (tiny.weights, tiny.graph):
        (tampered / source.name).write_bytes(source.read_bytes())
    data = bytearray((tampered / tiny.weights.name).read_bytes())
    data[-3] ^= 0x40  # one weight changes
    (tampered / tiny.weights.name).write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tampered)
    with pytest.raises(ModelError, match=r"tiny\.safetensors.*sha256 .* differs .* reinstall"):
        shipped.materialise("tiny")
    assert not shipped.complete_path("tiny").exists()


def test_an_unwritable_cache_is_a_clear_error(tiny, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SAMCELL_RT_HOME", str(blocker))
    with pytest.raises(ModelError, match="cannot be written .*SAMCELL_RT_HOME"):
        shipped.materialise("tiny")


CONCURRENT = """
import sys
from pathlib import Path
from samcell_rt import shipped
shipped.SHIPPED_DIR = Path(sys.argv[1])
shipped.SHIPPED["tiny"] = shipped.ShippedFiles(sys.argv[2], sys.argv[3])
print(shipped.materialise("tiny"))
"""


def test_two_processes_making_the_file_at_once_both_get_a_whole_file(tiny, tmp_path):
    import os

    env = {**os.environ, "SAMCELL_RT_HOME": str(tmp_path / "cache")}
    args = [sys.executable, "-c", CONCURRENT, str(tiny.weights.parent), tiny.weights_sha256, tiny.graph_sha256]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    path = shipped.complete_path("tiny")
    assert {o[0].strip() for o in outs} == {str(path)} and shipped._intact(path)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]


def test_int8_variant_is_derived_from_the_complete_file(tiny):
    import onnx

    from samcell_rt.export.onnx import verification_tiles
    from samcell_rt.runtime.contract import read_props

    path = shipped.materialise("tiny-int8")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    tiles = verification_tiles(256)
    assert np.abs(maps(path, tiles) - maps(shipped.materialise("tiny"), tiles)).max() < 0.05
    props = read_props(path)
    assert props["samcell.model_name"] == "tiny-int8" and props["samcell.precision"] == "int8"
    assert "samcell.verified_max_abs_error" not in props  # the fp32 file's figure is not this file's


@pytest.mark.parametrize("flags", [{"avx2"}, {"avx2", "avx512_vnni"}, {"avx2", "avx_vnni"}, {"amx_int8"}])
def test_int8_weights_use_7_bits_exactly_where_the_cpu_lacks_vnni(tiny, monkeypatch, flags):
    """Faked CPU flags, so a machine with VNNI checks the path a CPU without it takes (and back): without
    VNNI the int8 file gets 7-bit weights (onnxruntime's remedy for u8 x s8 saturation), is named for
    that, and still meets the int8 tolerance."""
    import onnx
    from onnx import numpy_helper

    from samcell_rt.export.onnx import verification_tiles
    from samcell_rt.runtime import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    saturates = not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}
    assert cpu.int8_saturates() is saturates
    path = shipped.materialise("tiny-int8")
    assert ("-int8-rr-" in path.name) is saturates
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest <= 64 if saturates else largest > 64  # 7-bit weights span [-64, 63]; full range [-127, 127]
    if saturates:  # the full-range file may exceed the tolerance on a CPU without VNNI (0.32 on a Zen 3)
        tiles = verification_tiles(256)
        assert np.abs(maps(path, tiles) - maps(shipped.materialise("tiny"), tiles)).max() < 0.05


def test_a_shipped_name_loads_its_weights_for_training(tiny, tiny_files):
    """`load_checkpoint(NAME)` (what `train --init NAME` calls) gives the shipped values, checked by sha256."""
    import torch

    from samcell_rt.export.checkpoints import load_checkpoint, load_shipped_model
    from samcell_rt.export.model import tiny_config
    from samcell_rt.export.onnx import verification_tiles

    loaded = load_checkpoint("tiny")
    reference = load_checkpoint(tiny_files[2], config=tiny_config(256))
    for key, value in reference.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    module = load_shipped_model("tiny")
    tiles = verification_tiles(256)
    with torch.no_grad():
        ours = module(torch.from_numpy(tiles)).numpy()
    assert np.abs(ours - maps(shipped.materialise("tiny"), tiles)).max() < 1e-5
