"""A model's sha256 is read once per process while the file stays the same (path, size, mtime, inode)."""

from __future__ import annotations

import hashlib
import os

from samcell_rt.runtime import contract


def test_a_model_is_hashed_once_until_it_changes(monkeypatch, tmp_path):
    calls = []
    hash_file = contract.file_sha256
    monkeypatch.setattr(contract, "file_sha256", lambda path: calls.append(path) or hash_file(path))
    monkeypatch.setattr(contract, "_HASHES", {})
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights v1")
    expected = hashlib.sha256(b"weights v1").hexdigest()
    assert contract.model_sha256(model) == contract.model_sha256(str(model)) == expected
    assert contract.model_sha256(tmp_path / ".." / tmp_path.name / "model.onnx") == expected and len(calls) == 1
    before = model.stat().st_mtime_ns
    model.write_bytes(b"weights v2")  # rewritten in place, same size and inode
    os.utime(model, ns=(before, before + 10**9))  # a later mtime even where the clock is coarse
    assert contract.model_sha256(model) == hashlib.sha256(b"weights v2").hexdigest() and len(calls) == 2
    replacement = tmp_path / "new.onnx"
    replacement.write_bytes(b"weights v3")
    os.replace(replacement, model)  # replaced atomically (a new inode)
    assert contract.model_sha256(model) == hashlib.sha256(b"weights v3").hexdigest() and len(calls) == 3
