"""Machine facts recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def machine_info() -> dict:
    """CPU model, cores, Python and key package versions (GPU facts when torch/nvidia-smi see one)."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for package in ("samcell-rt", "numpy", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless", "numba",
                    "scikit-image", "torch", "transformers", "samcell", "tensorrt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "machine": platform.machine(),
            "python": platform.python_version(), "versions": versions}
