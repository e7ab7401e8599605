#!/usr/bin/env bash
# Stage onnxruntime-gpu for the GPU check (run here, with access to PyPI): download the wheel recorded in
# benchmarks/gpu_plan.json (sha256 checked), keep what its CUDA provider needs (see "payload" there), pack it
# with xz and cut it into .gpu/parts/NN/ sized for the working tree as it is now (gpu_plan.py split).
# Restage after the tree grows: the dry run refuses parts that no longer fit beside it.
# TensorRT-RTX is never staged: its engines cannot run on the lent H100/H200 (compute capability 9.0).
set -euo pipefail
cd "$(dirname "$0")/.."
field() { python3 -c "import json,sys; print(json.load(open('benchmarks/gpu_plan.json'))['packages']['onnxruntime-gpu'][sys.argv[1]])" "$1"; }
wheel=$(field wheel)
mkdir -p .gpu/wheel
[ -f ".gpu/wheel/$wheel" ] || python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 -d .gpu/wheel "onnxruntime-gpu==$(field version)"
echo "$(field wheel_sha256)  .gpu/wheel/$wheel" | sha256sum -c --quiet
rm -rf .gpu/payload && mkdir -p .gpu/payload
unzip -q ".gpu/wheel/$wheel" 'onnxruntime/*' -d .gpu/payload -x 'onnxruntime/capi/libonnxruntime.so*' \
    'onnxruntime/capi/libonnxruntime_providers_tensorrt.so' 'onnxruntime/transformers/*' \
    'onnxruntime/quantization/*' 'onnxruntime/tools/*'
tar -C .gpu/payload -cf - onnxruntime | xz -9 -T0 > .gpu/onnxruntime-gpu.tar.xz
rm -rf .gpu/payload
python3 benchmarks/gpu_plan.py split .gpu/onnxruntime-gpu.tar.xz
