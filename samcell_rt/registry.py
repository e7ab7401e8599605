"""Known models: the registry, where their files live, how names become model files, and downloads.

Published SAMCell weights are checkpoints that `samcell-rt models pull NAME` downloads (resuming
partial downloads, checking sha256) and exports to ONNX in the user cache. Models shipped inside
the package store their weights once (safetensors, sha256 in `shipped.SHIPPED`) beside a weight-free
graph and a model card (`NAME.md`); their complete ONNX files, and derived ones such as
`samcell-lite-int8`, are made in the user cache on first use (see `samcell_rt.shipped`). The default,
SAMCell-Lite, runs whenever no model is named, so segmentation works offline out of the box.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cache import cache_dir
from .errors import DownloadError, InputError, ModelError, SamcellWarning
from .runtime.atomic import file_lock, write_text_atomic
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
HASHES_FILE = "hashes.json"  # in the cache: sha256 of downloads that publish none, by file
NAME_LIMIT = 100  # characters: names become file names (weights) and must stay typeable
_NAME = re.compile(r"\w[\w.+ -]*")  # letters and digits of any script, then also . + - _ and inner spaces


def _read_records(path: Path) -> dict | None:
    """The JSON object a cache record file holds; {} when there is none, None (after a warning
    naming the file) when it is damaged: unreadable, not UTF-8, not JSON, not an object."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        _warn(f"{path}: damaged record file ({type(exc).__name__}: {exc}); its records are ignored")
        return None
    if not isinstance(data, dict):
        _warn(f"{path}: damaged record file (a JSON {type(data).__name__}, not an object); its records are ignored")
        return None
    return data


def _warn(message: str) -> None:
    warnings.warn(message, SamcellWarning, stacklevel=3)


def _valid_entries(path: Path, records: dict | None, valid: Callable[[object], bool]) -> dict:
    """The entries of `records` that pass `valid`; one warning naming the file and the others."""
    if not records:
        return {}
    bad = [str(key) for key, value in records.items() if not valid(value)]
    if bad:
        _warn(f"{path}: damaged record(s) {', '.join(map(repr, bad))} ignored")
    return {key: value for key, value in records.items() if valid(value)}


def _is_adapted_record(record: object) -> bool:
    return isinstance(record, dict) and all(isinstance(record.get(key, ""), str) and "\0" not in record.get(key, "")
                                            for key in ("onnx", "weights")) and bool(record.get("onnx"))


@contextlib.contextmanager
def _updating(name: str) -> Iterator[dict]:
    """The records of cache file `name` to change in place, under the file's lock; written back
    atomically when the block succeeds. A damaged file is kept beside it (`NAME.damaged`), not lost."""
    path = cache_dir() / name
    with file_lock(cache_dir() / f".{name}.lock"):
        records = _read_records(path)
        if records is None:
            aside = path.with_name(f"{name}.damaged")
            path.replace(aside)
            _warn(f"{path}: the damaged file is kept as {aside}; a new one is written")
            records = {}
        yield records
        write_text_atomic(path, json.dumps(records, indent=2, sort_keys=True))


def adapted_models() -> dict[str, dict]:
    """Models made by `samcell-rt adapt`, by name: path, parent, data hash, thresholds, scores
    (records that are not such a description are left out, with a warning)."""
    path = cache_dir() / ADAPTED_FILE
    return _valid_entries(path, _read_records(path), _is_adapted_record)


def register_adapted(name: str, record: dict, overwrite: bool = False) -> None:
    """Record an adapted model under `name`, under the registry's lock (every check repeated
    there); a replaced record's weights in the cache go with it."""
    with _updating(ADAPTED_FILE) as registry:
        check_adapted_name(name, overwrite, Path(record["onnx"]))
        old = registry.get(name)
        registry[name] = record
    if _is_adapted_record(old) and old.get("weights") and old["weights"] != record.get("weights"):
        _remove_cached_weights(Path(old["weights"]), registry)


def _remove_cached_weights(weights: Path, registry: dict) -> None:
    """Delete a replaced model's weights (and their .json) when they lie in the cache and no record uses them."""
    if not weights.resolve().is_relative_to(cache_dir().resolve()):
        return
    if any(isinstance(r, dict) and r.get("weights") == str(weights) for r in registry.values()):
        return
    for path in (weights, weights.with_suffix(".json")):
        path.unlink(missing_ok=True)


def check_adapted_name(name: str, overwrite: bool = False, out: Path | None = None) -> None:
    """InputError when `name` cannot name a new adapted model written to `out` (checked before any
    training and again when registering): not a plain name, a shipped or downloadable model's name,
    an adapted model's name without `overwrite`, or `out` is another adapted model's file."""
    if len(name) > NAME_LIMIT or not _NAME.fullmatch(name) or name != name.strip():
        raise InputError(f"model name {name[:NAME_LIMIT]!r}{'...' if len(name) > NAME_LIMIT else ''}: give a plain "
                         f"name of at most {NAME_LIMIT} characters (letters, digits, '.', '_', '+', '-', inner spaces; "
                         "no path separators)")
    if name in shipped_names() or name in KNOWN:
        raise InputError(f"model name {name!r} is a shipped or downloadable model; choose another --name")
    adapted = adapted_models()
    if name in adapted and not overwrite:
        raise InputError(f"an adapted model named {name!r} exists ({adapted[name]['onnx']}); "
                         "pass --overwrite to replace it or choose another --name")
    if out is not None:
        for other, record in adapted.items():
            if other != name and Path(record["onnx"]).resolve() == out.resolve():
                raise InputError(f"{out} is the file of the adapted model {other!r}; choose another --out, or "
                                 f"replace that model with --name {other} --overwrite")


@contextlib.contextmanager
def adapting(name: str, out: Path, overwrite: bool = False) -> Iterator[None]:
    """Claim `name` and the file `out` for one adapt run (the checks of `check_adapted_name` made
    while both are held): a second run wanting either fails at once, before any work, instead of
    replacing the first run's model. The claims go when the block ends or the process dies."""
    locks = cache_dir() / "adapt" / "locks"

    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    with file_lock(locks / f"name-{key(name)}.lock", busy=f"another adapt run is making the model {name!r} now; "
                                                           "wait for it or choose another --name"), \
            file_lock(locks / f"out-{key(str(out.resolve()))}.lock",
                      busy=f"another adapt run is writing {out} now; wait for it or choose another --out"):
        check_adapted_name(name, overwrite, out)
        yield


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
    """sha256 values recorded on first verified download, for models that publish none (a damaged
    record is ignored with a warning: the next download records its hash again)."""
    path = cache_dir() / HASHES_FILE
    return _valid_entries(path, _read_records(path),
                          lambda value: isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None)


def record_hash(file: str, sha256: str) -> None:
    with _updating(HASHES_FILE) as hashes:
        hashes[file] = sha256


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
    from .export.onnx import ModelProps, export_model

    export_model(checkpoint, exported_path(name), ModelProps(name=name), precision=precision)
    return exported_path(name)
