#!/usr/bin/env bash
# Installs samcell-rt with its test extras and runs the default (non-slow, non-GPU) test suite.
# torch is pinned and installed first: an unpinned torch would pull GBs of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[cpu,export,dev]"
python -m pytest -q -m "not slow and not gpu" "$@"
