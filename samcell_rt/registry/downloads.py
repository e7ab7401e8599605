"""Published SAMCell checkpoints: what to download, the resumable verified downloader, the sha256
recorded on first download for files that publish none, and `pull` (download, then export to ONNX)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_dir
from ..errors import DownloadError, ModelError
from ..runtime.contract import file_sha256
from ..runtime.engines.table import Precision
from .records import read_records, updating, valid_entries

RELEASE = "https://github.com/saahilsanganeriya/SAMCell/releases/download/v1"
HASHES_FILE = "hashes.json"  # in the cache: sha256 of downloads that publish none, by file
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def recorded_hashes() -> dict[str, str]:
    """sha256 values recorded on first verified download, for models that publish none (a damaged
    record is ignored with a warning: the next download records its hash again)."""
    return valid_entries(HASHES_FILE, read_records(HASHES_FILE),
                         lambda value: isinstance(value, str) and _SHA256.fullmatch(value) is not None)


def record_hash(file: str, sha256: str) -> None:
    """Remember a download's sha256 (trust on first use: later downloads must match it)."""
    with updating(HASHES_FILE) as hashes:
        hashes[file] = sha256


def expected_sha256(entry: ModelEntry) -> str | None:
    """The sha256 a download of `entry` must have: the published one, else the one recorded; None before the first."""
    return entry.sha256 or recorded_hashes().get(entry.file)


def verified_checkpoint(entry: ModelEntry) -> Path | None:
    """The downloaded checkpoint of `entry` when it is here and matches its expected sha256, else None."""
    checkpoint = cache_dir() / entry.file
    return checkpoint if _intact(checkpoint, expected_sha256(entry)) else None


def _intact(path: Path, expected: str | None) -> bool:
    return path.is_file() and (expected is None or file_sha256(path) == expected)


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


def pull_model(name: str, progress: Callable[[int, int | None], None] | None = None, precision: str = Precision.FP32) -> Path:
    """Download a known model's checkpoint (verified) and export it to ONNX in the user cache."""
    if name not in KNOWN:
        raise ModelError(name, f"not a downloadable model (known: {', '.join(KNOWN)})")
    entry = KNOWN[name]
    expected = expected_sha256(entry)
    checkpoint = cache_dir() / entry.file
    if not _intact(checkpoint, expected):
        digest = download(entry.url, checkpoint, expected, progress)
        if expected is None:
            record_hash(entry.file, digest)  # trust on first use: later pulls must match it
    from ..export.onnx import ModelProps, export_model

    export_model(checkpoint, exported_path(name), ModelProps(name=name), precision=precision)
    return exported_path(name)
