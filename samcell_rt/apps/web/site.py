"""Assemble the static site: the page and its modules, the model file, the onnxruntime-web files.

The folder is self-contained: it is opened from any static web server and asks no other host for
anything. `site.json` tells the page which model file to load by default; the model's thresholds
and tile size are read by the page from the ONNX file's own metadata, as the runtime reads them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...errors import ModelError, OutputError
from ...runtime.atomic import atomic_path, check_output_file, write_text_atomic
from ...runtime.contract import ModelInfo, file_sha256, model_sha256, read_props
from .npm import ORT_WEB, runtime_files

STATIC = Path(__file__).parent / "static"
MODEL_FILE = "model.onnx"
RUNTIME_FOLDER = "ort"


def build_site(folder: Path, model: str | Path | None = None, tarball: Path | None = None) -> dict:
    """Write the site for `model` (a name or file, as `--model` takes it) into `folder`; returns what it wrote."""
    from ...registry import resolve_model

    onnx = resolve_model(model)
    if onnx.suffix.lower() != ".onnx":
        raise ModelError(onnx, "the page runs ONNX models only (onnxruntime-web); give the model's .onnx file")
    info = ModelInfo.from_props(onnx, read_props(onnx))
    check_output_file(folder / "index.html")
    runtime = runtime_files(ORT_WEB, tarball)
    try:
        for source in sorted(STATIC.iterdir()):
            _copy(source, folder / source.name)
        for source in sorted(runtime.iterdir()):
            _copy(source, folder / RUNTIME_FOLDER / source.name)
        _copy(onnx, folder / MODEL_FILE)
    except OSError as exc:
        raise OutputError(f"cannot write the site to {folder} ({exc})") from None
    record = {"model": MODEL_FILE, "model_name": info.name, "model_version": info.version,
              "model_sha256": model_sha256(onnx), "runtime": f"{ORT_WEB.name} {ORT_WEB.version}"}
    write_text_atomic(folder / "site.json", json.dumps(record, indent=1))
    return {**record, "folder": str(folder), "model_path": str(onnx)}


def _copy(source: Path, dest: Path) -> None:
    """Copy one file atomically, skipping it when an identical copy is already there (rebuilds are quick)."""
    if dest.is_file() and dest.stat().st_size == source.stat().st_size and file_sha256(dest) == file_sha256(source):
        return
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
