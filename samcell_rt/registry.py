"""Known models: the registry, where their files live, how names become model files, and downloads.

Published SAMCell weights are checkpoints that `samcell-rt models pull NAME` downloads (resuming
partial downloads, checking sha256) and exports to ONNX in the user cache. Models shipped inside
the package store their weights once (safetensors, sha256 in `shipped.SHIPPED`) beside a weight-free
graph and a model card (`NAME.md`); their complete ONNX files, and derived ones such as
`samcell-lite-int8`, are made in the user cache on first use (see `samcell_rt.shipped`). The default,
SAMCell-Lite, runs whenever no model is named, so segmentation works offline out of the box.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cache import cache_dir
from .errors import DownloadError, InputError, ModelError
from .runtime.atomic import write_text_atomic
from .runtime.contract import file_sha256
from .shipped import SHIPPED, SHIPPED_DIR, card_file, complete_path, materialise, shipped_names, weights_file

DEFAULT_MODEL = "samcell-lite"
RELEASE = "https://github.com/saahilsanganeriya/SAMCell/releases/download/v1"


@dataclass(frozen=True)
class ModelEntry:
    """One known model: what to download, how to check it, and what it is."""

    name: str
    file: str
    url: str | None
    sha256: str | None  # None: not published; recorded on the first verified download
    licence: str
    description: str
    scores: dict[str, float] = field(default_factory=dict)


KNOWN: dict[str, ModelEntry] = {
    "samcell-generalist": ModelEntry(
        "samcell-generalist", "samcell-generalist.pt", f"{RELEASE}/samcell-generalist.pt", None,
        "as published in the SAMCell release (see its repository)",
        "SAMCell ViT-B fine-tuned on LIVECell + Cellpose Cytoplasm (paper's best zero-shot model)"),
    "samcell-cyto": ModelEntry(
        "samcell-cyto", "samcell-cyto.pt", f"{RELEASE}/samcell-cyto.pt", None,
        "as published in the SAMCell release (see its repository)",
        "SAMCell ViT-B fine-tuned on Cellpose Cytoplasm"),
}


def exported_path(name: str) -> Path:
    """Where `pull` puts the ONNX export of a known model."""
    return cache_dir() / f"{name}.onnx"


ADAPTED_FILE = "adapted.json"  # in the cache: models `samcell-rt adapt` made, by name


def adapted_models() -> dict[str, dict]:
    """Models made by `samcell-rt adapt`, by name: path, parent, data hash, thresholds, scores."""
    path = cache_dir() / ADAPTED_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def register_adapted(name: str, record: dict, overwrite: bool = False) -> None:
    """Record an adapted model under `name`; refuse a shipped or downloadable model's name, and an
    adapted model's name unless `overwrite`."""
    check_adapted_name(name, overwrite)
    registry = adapted_models()
    registry[name] = record
    write_text_atomic(cache_dir() / ADAPTED_FILE, json.dumps(registry, indent=2, sort_keys=True))


def check_adapted_name(name: str, overwrite: bool = False) -> None:
    """InputError when `name` cannot name a new adapted model (checked before any training)."""
    if not name or "/" in name or "\\" in name:
        raise InputError(f"model name {name!r}: give a plain name (no path separators)")
    if name in shipped_names() or name in KNOWN:
        raise InputError(f"model name {name!r} is a shipped or downloadable model; choose another --name")
    if name in adapted_models() and not overwrite:
        raise InputError(f"an adapted model named {name!r} exists ({adapted_models()[name]['onnx']}); "
                         "pass --overwrite to replace it or choose another --name")


def model_table() -> list[dict]:
    """Every known, shipped and adapted model with its state on this machine (for `models list`)."""
    rows = [{"name": n, "kind": "shipped", "path": str(complete_path(n)), "ready": True, "default": n == DEFAULT_MODEL}
            for n in shipped_names()]
    for entry in KNOWN.values():
        path = exported_path(entry.name)
        rows.append({"name": entry.name, "kind": "download", "path": str(path), "ready": path.exists(), "default": False})
    for name, record in adapted_models().items():
        rows.append({"name": name, "kind": "adapted", "path": record["onnx"], "ready": Path(record["onnx"]).is_file(),
                     "default": False})
    return rows


def model_info(name: str) -> dict:
    """Everything known about one model name."""
    if name in KNOWN:
        info = asdict(KNOWN[name])
        info["recorded_sha256"] = recorded_hashes().get(KNOWN[name].file)
        info["onnx"] = str(exported_path(name)) if exported_path(name).exists() else None
        return info
    if name in shipped_names():
        base = name if name in SHIPPED else None
        return {"name": name, "onnx": str(materialise(name)), "default": name == DEFAULT_MODEL,
                "weights": str(weights_file(base)) if base else None,
                "weights_sha256": SHIPPED[base].weights_sha256 if base else None,
                "model_card": str(card_file(name)) if card_file(name).exists() else None}
    if name in adapted_models():
        return {"name": name, "kind": "adapted", **adapted_models()[name]}
    raise ModelError(name, f"unknown model name (known: {', '.join(_known_names())})")


def _known_names() -> list[str]:
    return [*shipped_names(), *KNOWN, *adapted_models()]


def recorded_hashes() -> dict[str, str]:
    """sha256 values recorded on first verified download, for models that publish none."""
    path = cache_dir() / "hashes.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_hash(file: str, sha256: str) -> None:
    hashes = recorded_hashes()
    hashes[file] = sha256
    write_text_atomic(cache_dir() / "hashes.json", json.dumps(hashes, indent=2, sort_keys=True))


def resolve_model(model: str | Path | None) -> Path:
    """Turn a model path or model name into an ONNX file path; raise ModelError if neither.

    A shipped model's complete ONNX is made in the user cache on its first use (about a second)."""
    if model is None:
        if DEFAULT_MODEL in shipped_names():
            return materialise(DEFAULT_MODEL)
        raise ModelError(SHIPPED_DIR / f"{DEFAULT_MODEL}.safetensors",
                         "the default model is missing from this installation; reinstall samcell-rt or pass --model")
    path = Path(model)
    if path.is_file():
        return path
    name = str(model)
    if name in shipped_names():
        return materialise(name)
    if name in KNOWN:
        if exported_path(name).exists():
            return exported_path(name)
        raise ModelError(name, f"not downloaded yet: run `samcell-rt models pull {name}`")
    adapted = adapted_models().get(name)
    if adapted is not None:
        if Path(adapted["onnx"]).is_file():
            return Path(adapted["onnx"])
        raise ModelError(name, f"adapted model file {adapted['onnx']} is missing (moved or deleted?); run "
                               "`samcell-rt adapt` again or pass the file's new path")
    known = ", ".join(_known_names())
    raise ModelError(model, f"no such file, and not a known model name (known: {known})")


def download(url: str, dest: Path, sha256: str | None, progress: Callable[[int, int | None], None] | None = None,
             chunk: int = 1 << 20, timeout: float = 60.0) -> str:
    """Download `url` to `dest`, resuming a `.part` file left by an interrupted run.

    The finished file is checked against `sha256` when given (a mismatch deletes it) and only
    then renamed to `dest`. Returns the file's sha256.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if done and response.status != 206:  # server ignored the range: start again
                done = 0
            total = response.length + done if response.length is not None else None
            with open(part, "ab" if done else "wb") as handle:
                while block := response.read(chunk):
                    handle.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # range past the end: the part file is already complete
            pass
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {exc} (partial download kept; run again to resume)") from exc
    digest = file_sha256(part)
    if sha256 and digest != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 {digest} does not match the expected {sha256}; file removed")
    part.replace(dest)
    return digest


def pull_model(name: str, progress: Callable[[int, int | None], None] | None = None, precision: str = "fp32") -> Path:
    """Download a known model's checkpoint (verified) and export it to ONNX in the user cache."""
    if name not in KNOWN:
        raise ModelError(name, f"not a downloadable model (known: {', '.join(KNOWN)})")
    entry = KNOWN[name]
    expected = entry.sha256 or recorded_hashes().get(entry.file)
    checkpoint = cache_dir() / entry.file
    if not (checkpoint.exists() and (expected is None or file_sha256(checkpoint) == expected)):
        digest = download(entry.url, checkpoint, expected, progress)
        if expected is None:
            record_hash(entry.file, digest)  # trust on first use: later pulls must match it
    from .export.onnx import export_onnx

    export_onnx(checkpoint, exported_path(name), precision=precision, name=name)
    return exported_path(name)
