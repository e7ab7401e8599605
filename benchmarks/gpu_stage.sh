#!/usr/bin/env bash
# Stage (here, with network) the wheels benchmarks/gpu_check.sh needs on the device machine (Python 3.12,
# x86-64, no network): .whl/small/ (one call's carry) and onnxruntime-gpu split into .whl/parts/NN/.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-common-dir)/info/exclude"
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$1" "${@:2}"; }
mkdir -p .whl/small .whl/big
get .whl/small onnxslim==0.1.98 tensorrt-rtx-cu13-bindings==1.7.1.116
get .whl/big onnxruntime-gpu==1.31.1 tensorrt-rtx-cu13-libs==1.7.1.116
for wheel in .whl/big/*.whl; do
    name=$(basename "$wheel")
    (cd .whl/big && sha256sum "$name") > ".whl/small/$name.sha256"
    split -b 55M -d "$wheel" "/tmp/$name.part"
    for part in /tmp/"$name".part*; do n=${part##*.part}; mkdir -p ".whl/parts/$n"; mv "$part" ".whl/parts/$n/"; done
done
du -sh .whl/small .whl/parts/*
