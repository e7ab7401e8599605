"""The user cache folder: downloaded checkpoints, exported models and built TensorRT engines."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """User cache root ($SAMCELL_RT_HOME overrides; else $XDG_CACHE_HOME/samcell-rt or ~/.cache/samcell-rt)."""
    root = os.environ.get("SAMCELL_RT_HOME")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "samcell-rt"
