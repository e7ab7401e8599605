"""`OUT/run.json`: the settings and model of the last run into a folder, and the reader warnings of its inputs.

Written by the folder driver at the end of every run; warnings of inputs a resumed run skipped are
kept from the previous run.json, so the report still shows them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..runtime.atomic import write_text_atomic
from .outputs import RUN_JSON


def read_run_info(out: Path) -> dict:
    """The run.json of an output folder ({} when absent or unreadable)."""
    try:
        info = json.loads((out / RUN_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def write_run_info(out: Path, info: dict, warnings: dict[str, list[str]]) -> None:
    """Settings and model of the last run, plus reader warnings (kept for inputs it skipped)."""
    kept = read_run_info(out).get("warnings") or {}
    merged = {**(kept if isinstance(kept, dict) else {}), **warnings}
    info = {**info, "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"), "warnings": {k: v for k, v in merged.items() if v}}
    write_text_atomic(out / RUN_JSON, json.dumps(info, indent=1))
