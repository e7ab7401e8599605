"""Models `samcell-rt adapt` made: their records in the cache (`adapted.json`, changed only under
its lock), the rules for their names, and the claim one adapt run holds on a name and a file."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from ..cache import cache_dir
from ..errors import InputError
from ..runtime.atomic import file_lock
from ..shipped import shipped_names
from .downloads import KNOWN
from .records import read_records, updating, valid_entries

ADAPTED_FILE = "adapted.json"  # in the cache: models `samcell-rt adapt` made, by name
NAME_LIMIT = 100  # characters: names become file names (weights) and must stay typeable
_NAME = re.compile(r"\w[\w.+ -]*")  # letters and digits of any script, then also . + - _ and inner spaces


def _is_adapted_record(record: object) -> bool:
    return isinstance(record, dict) and all(isinstance(record.get(key, ""), str) and "\0" not in record.get(key, "")
                                            for key in ("onnx", "weights")) and bool(record.get("onnx"))


def _valid(records: dict | None) -> dict[str, dict]:
    return valid_entries(ADAPTED_FILE, records, _is_adapted_record)


def adapted_models() -> dict[str, dict]:
    """Models made by `samcell-rt adapt`, by name: path, parent, data hash, thresholds, scores
    (records that are not such a description are left out, with a warning)."""
    return _valid(read_records(ADAPTED_FILE))


def register_adapted(name: str, record: dict, overwrite: bool = False) -> None:
    """Record an adapted model under `name`, under the registry's lock (every check repeated
    there, on the records read under it); a replaced record's weights in the cache go with it."""
    with updating(ADAPTED_FILE) as registry:
        check_adapted_name(name, overwrite, Path(record["onnx"]), _valid(registry))
        old = registry.get(name)
        registry[name] = record
    if _is_adapted_record(old) and old.get("weights") and old["weights"] != record.get("weights"):
        _remove_cached_weights(Path(old["weights"]), registry)


def remove_weights(path: Path) -> None:
    """Delete a weights file and the trainer's record beside it (`.json`), whichever exist."""
    for file in (path, path.with_suffix(".json")):
        file.unlink(missing_ok=True)


def _remove_cached_weights(weights: Path, registry: dict) -> None:
    """Delete a replaced model's weights when they lie in the cache and no record uses them."""
    if not weights.resolve().is_relative_to(cache_dir().resolve()):
        return
    if any(isinstance(r, dict) and r.get("weights") == str(weights) for r in registry.values()):
        return
    remove_weights(weights)


def check_adapted_name(name: str, overwrite: bool = False, out: Path | None = None,
                       adapted: dict[str, dict] | None = None) -> None:
    """InputError when `name` cannot name a new adapted model written to `out` (checked before any
    training and again when registering): not a plain name, a shipped or downloadable model's name,
    an adapted model's name without `overwrite`, or `out` is another adapted model's file.
    `adapted`: the adapted models' records when the caller holds them (read here when None)."""
    if len(name) > NAME_LIMIT or not _NAME.fullmatch(name) or name != name.strip():
        raise InputError(f"model name {name[:NAME_LIMIT]!r}{'...' if len(name) > NAME_LIMIT else ''}: give a plain "
                         f"name of at most {NAME_LIMIT} characters (letters, digits, '.', '_', '+', '-', inner spaces; "
                         "no path separators)")
    if name in shipped_names() or name in KNOWN:
        raise InputError(f"model name {name!r} is a shipped or downloadable model; choose another --name")
    if adapted is None:
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
