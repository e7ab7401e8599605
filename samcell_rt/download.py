"""Resumable, verified downloads of model checkpoints."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import SamcellError
from .runtime.contract import file_sha256


class DownloadError(SamcellError):
    """A download failed or its checksum did not match."""


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
    from .errors import ModelError
    from .registry import KNOWN, cache_dir, exported_path, record_hash, recorded_hashes

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
