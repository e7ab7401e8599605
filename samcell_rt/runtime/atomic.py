"""Atomic file writes: a crash or kill never leaves a half-written output under its final name.

Temporary files are `.<final name>.<random>.part` beside the final file (so the rename is atomic
on POSIX and Windows). mkstemp makes them private (0600); before the rename they get the mode
any newly created file gets under the process umask, so colleagues on shared storage can read
results exactly as they could read files written directly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

PART_SUFFIX = ".part"


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it, which is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PART_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_output_file(final: str | Path) -> None:
    """Prove `final` can be written (its folder made, a file created there) before long work that
    would write it; OutputError naming the path and the reason otherwise (a file where a folder
    should be, no permission, a full disk)."""
    final = Path(final)
    try:
        if final.is_dir():
            raise IsADirectoryError(21, "is a folder", str(final))
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{final.name}.", suffix=PART_SUFFIX, dir=final.parent)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        blocker = next(parent for parent in final.parents if parent.exists())
        raise OutputError(f"cannot write {final} ({blocker} is a file, not a folder)") from None
    except OSError as exc:
        raise OutputError(f"cannot write {final} ({exc.strerror or exc})") from None


def write_text_atomic(final: str | Path, text: str) -> None:
    """Write a whole text file atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(final: str | Path, data: bytes) -> None:
    """Write a whole binary file atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def stale_parts(folder: Path) -> list[Path]:
    """Temporary files a killed writer left in `folder` (only names this module makes)."""
    return [p for p in folder.glob(f".*{PART_SUFFIX}") if p.is_file() and p.name.count(".") >= 3]
