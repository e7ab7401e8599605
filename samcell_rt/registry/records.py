"""The registry's JSON record files in the user cache (adapted models, download hashes): read
defensively, changed only under the file's lock and written back atomically."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator

from ..cache import cache_dir
from ..errors import SamcellWarning
from ..runtime.atomic import file_lock, write_text_atomic


def read_records(name: str) -> dict | None:
    """The JSON object cache file `name` holds; {} when there is none, None (after a warning naming
    the file) when it is damaged: unreadable, not UTF-8, not JSON, not an object."""
    path = cache_dir() / name
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        warn(f"{path}: damaged record file ({type(exc).__name__}: {exc}); its records are ignored")
        return None
    if not isinstance(data, dict):
        warn(f"{path}: damaged record file (a JSON {type(data).__name__}, not an object); its records are ignored")
        return None
    return data


def warn(message: str) -> None:
    """A user-facing warning, attributed to the caller of the function that warns."""
    warnings.warn(message, SamcellWarning, stacklevel=3)


def valid_entries(name: str, records: dict | None, valid: Callable[[object], bool]) -> dict:
    """The entries of `records` (from cache file `name`) that pass `valid`; one warning naming the
    file and the others."""
    if not records:
        return {}
    bad = [str(key) for key, value in records.items() if not valid(value)]
    if bad:
        warn(f"{cache_dir() / name}: damaged record(s) {', '.join(map(repr, bad))} ignored")
    return {key: value for key, value in records.items() if valid(value)}


@contextlib.contextmanager
def updating(name: str) -> Iterator[dict]:
    """The records of cache file `name` to change in place, under the file's lock; written back
    atomically when the block succeeds. A damaged file is kept beside it (`NAME.damaged`), not lost."""
    path = cache_dir() / name
    with file_lock(cache_dir() / f".{name}.lock"):
        records = read_records(name)
        if records is None:
            aside = path.with_name(f"{name}.damaged")
            path.replace(aside)
            warn(f"{path}: the damaged file is kept as {aside}; a new one is written")
            records = {}
        yield records
        write_text_atomic(path, json.dumps(records, indent=2, sort_keys=True))
