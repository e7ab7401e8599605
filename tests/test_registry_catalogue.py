"""The model catalogue: every kind of model answers the same questions (ONNX file, trainable weights,
table row, info), names are looked up in one order, and adapt's helpers (weights, metadata) need no engine."""

from __future__ import annotations

import hashlib
import json

import pytest

from samcell_rt import registry, shipped
from samcell_rt.errors import InputError, ModelError
from samcell_rt.registry import ModelKind
from samcell_rt.synthetic import blob_model


@pytest.fixture()
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SAMCELL_RT_HOME", str(home))
    return home


def test_the_kinds_are_the_words_models_list_prints(home):
    assert [str(kind) for kind in ModelKind] == ["shipped", "download", "adapted", "file"]
    rows = registry.model_rows()
    assert [row.kind for row in rows] == sorted((row.kind for row in rows), key=list(ModelKind).index)
    assert {row.kind for row in rows} == {ModelKind.SHIPPED, ModelKind.DOWNLOAD}


def test_an_adapted_model_answers_like_every_other_kind(tmp_path, home):
    onnx, weights = blob_model(tmp_path / "mine.onnx"), tmp_path / "mine.safetensors"
    registry.register_adapted("mine", {"onnx": str(onnx), "weights": str(weights), "peak": 0.5})
    row = registry.model_rows()[-1]
    assert (row.name, row.kind, row.path, row.ready, row.default) == ("mine", "adapted", onnx, True, False)
    info = registry.model_info("mine")
    assert json.loads(json.dumps(info)) == {"name": "mine", "kind": "adapted", "onnx": str(onnx),
                                            "weights": str(weights), "peak": 0.5}
    assert registry.resolve_model("mine") == onnx
    with pytest.raises(ModelError, match="has no trainable weights"):  # recorded, but the file is gone
        registry.trainable_weights("mine")
    weights.write_bytes(b"w")
    assert registry.trainable_weights("mine") == weights
    onnx.unlink()
    assert not registry.model_rows()[-1].ready
    with pytest.raises(ModelError, match="is missing"):
        registry.resolve_model("mine")


def test_trainable_weights_of_each_kind(tmp_path, home, monkeypatch):
    assert registry.trainable_weights("samcell-lite") == shipped.weights_file("samcell-lite")  # sha256-checked
    for model in ("samcell-lite-int8", "samcell-cyto", blob_model(tmp_path / "plain.onnx")):
        with pytest.raises(ModelError, match="has no trainable weights"):
            registry.trainable_weights(model)
    with pytest.raises(ModelError, match="not a known model name"):
        registry.trainable_weights("no-such-model")
    checkpoint = home / "samcell-cyto.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"downloaded")
    assert registry.trainable_weights("samcell-cyto") == checkpoint  # no hash recorded yet: taken as it is
    registry.record_hash("samcell-cyto.pt", hashlib.sha256(b"another file").hexdigest())
    with pytest.raises(ModelError, match="has no trainable weights"):
        registry.trainable_weights("samcell-cyto")


def test_model_meta_reads_the_props_without_an_engine(tmp_path, home, monkeypatch):
    import samcell_rt.runtime.engines as engines

    monkeypatch.setattr(engines, "open_engine", lambda *a, **k: pytest.fail("model_meta opened an engine"))
    path = blob_model(tmp_path / "m.onnx", tile=128, props={"samcell.peak_threshold": "0.6"})
    meta = registry.model_meta(path)
    assert (meta.path, meta.name, meta.tile, meta.peak_threshold, meta.fill_threshold) == (path, "blob-test", 128, 0.6, 0.09)
    registry.register_adapted("mine", {"onnx": str(path)})
    assert registry.model_meta("mine") == meta
    with pytest.raises(ModelError, match="not a samcell-rt model"):
        registry.model_meta(blob_model(tmp_path / "bare.onnx", props={"samcell.tile": None}))


def test_a_path_to_a_file_wins_over_a_name(tmp_path, home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob_model(tmp_path / "samcell-cyto")
    source = registry.source_of("samcell-cyto")
    assert source.kind == ModelKind.FILE and source.resolve().name == "samcell-cyto" and source.weights() is None
    assert source.info() == {"name": "samcell-cyto", "kind": "file", "onnx": "samcell-cyto"}
    assert registry.model_info("samcell-cyto")["url"].endswith("/samcell-cyto.pt")  # info knows names only


def test_remove_weights_takes_the_trainer_record_along(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"w")
    weights.with_suffix(".json").write_text("{}")
    registry.remove_weights(weights)
    registry.remove_weights(weights)  # nothing left: no error
    assert list(tmp_path.iterdir()) == []


def test_check_adapted_name_uses_the_records_it_is_given(tmp_path, home):
    held = {"theirs": {"onnx": str(tmp_path / "theirs.onnx")}}
    registry.check_adapted_name("theirs")  # nothing recorded on disk
    with pytest.raises(InputError, match="named 'theirs' exists"):
        registry.check_adapted_name("theirs", adapted=held)
    with pytest.raises(InputError, match="the file of the adapted model 'theirs'"):
        registry.check_adapted_name("mine", out=tmp_path / "theirs.onnx", adapted=held)
