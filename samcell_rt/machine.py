"""Machine facts recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from .runtime.cpu import cpu_model, reported_flags


def gpu_info() -> dict | None:
    """GPU name, driver and memory from nvidia-smi, or None without one."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = [f.strip() for f in line.splitlines()[0].split(",")] if line.strip() else []
    return dict(zip(("name", "driver", "memory", "compute_capability"), fields)) if fields else None


def machine_info() -> dict:
    """CPU model and its precision flags (amx / avx512_bf16 / vnni), cores, GPU (if any), Python and key
    package versions."""
    versions = {}
    for package in ("samcell-rt", "numpy", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless", "numba",
                    "scikit-image", "torch", "transformers", "samcell", "tensorrt", "openvino"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_model(), "cpu_flags": reported_flags(), "cores": len(os.sched_getaffinity(0)),
            "machine": platform.machine(), "gpu": gpu_info(),
            "python": platform.python_version(), "versions": versions}


def emit_report(report: dict, out=None) -> None:
    """Print a benchmark report as JSON and, when `out` is given, write it there too."""
    import json
    from pathlib import Path

    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
