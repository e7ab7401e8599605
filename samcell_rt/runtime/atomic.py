"""Atomic file writes: a crash or kill never leaves a half-written output under its final name.

Temporary files are `.<final name>.<random>.part` beside the final file (so the rename is atomic
on POSIX and Windows). mkstemp makes them private (0600); before the rename they get the mode
any newly created file gets under the process umask, so colleagues on shared storage can read
results exactly as they could read files written directly. On POSIX the writer holds an advisory
lock on its temporary file until the rename, so a cleaner can tell a live writer's file from one a
killed writer left (the kernel drops the lock when a process dies, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import tempfile
import time
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
    tmp_path = Path(tmp)
    if not _lock(fd, blocking=False):  # no advisory locks here (Windows): an open file would block the rename
        os.close(fd)
        fd = -1
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if fd >= 0:
            os.close(fd)


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


def stale_parts(folder: Path, min_age: float = 0.0, of: str = "") -> list[Path]:
    """Temporary files a killed writer left in `folder` (only names this module makes; with `of`,
    only those for the final name `of`): none a live writer holds locked, none modified in the last
    `min_age` seconds (where locks are unavailable, age is the only sign of a dead writer)."""
    now = time.time()
    found = []
    for path in folder.glob(f".{glob.escape(of) + '.' if of else ''}*{PART_SUFFIX}") if folder.is_dir() else ():
        try:
            stale = path.is_file() and path.name.count(".") >= 3 and now - path.stat().st_mtime >= min_age
        except OSError:  # removed meanwhile
            continue
        if stale and not _locked_by_another(path):
            found.append(path)
    return found


def remove_stale_parts(folder: Path, min_age: float = 0.0, of: str = "") -> int:
    """Remove `stale_parts(folder, min_age, of)`; how many went (a vanished or protected one is left)."""
    removed = 0
    for path in stale_parts(folder, min_age, of):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def file_lock(path: str | Path, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing; never removed, so every process
    locks the same file) for the block. With `busy`, a lock held elsewhere raises OutputError(busy)
    at once; without, it waits. Released when the block ends or the process dies; a no-op where the
    platform has no advisory locks."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:  # a read-only cache, a file where a folder should be
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})") from None
    try:
        if not _lock(fd, blocking=busy is None) and busy is not None and _lock_supported():
            raise OutputError(busy)
        yield
    finally:
        os.close(fd)


def _lock_supported() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _lock(fd: int, blocking: bool) -> bool:
    """Take an exclusive flock on `fd`; False when it is held elsewhere (non-blocking) or unsupported."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _locked_by_another(path: Path) -> bool:
    """True when some open file (this process's included) holds a lock on `path`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # vanished or unreadable: not ours to remove
    try:
        if not _lock_supported():
            return False
        return not _lock(fd, blocking=False)
    finally:
        os.close(fd)
