#!/usr/bin/env bash
# Train the default model on a lent H100/H200 and bring the checkpoint back in $OUT. NOT RUN YET: no GPU
# was lent to the task that wrote it; its first run will tell what needs fixing.
#
# Here first: `python scripts/gpu_train_stage.py` (data and starting weights into .gpudata/parts/NN, each
# carried by its own call with command `true`; ignored files stay on the warm machine). Then this script,
# carrying .gpudata/parts/train.tar.sha256. The device has torch, transformers, safetensors, onnxruntime,
# OpenCV, scikit-image, tifffile, numba and click; samcell_rt runs from the working tree.
# The recipe is the CPU one (same sources, per-source validation) with the GPU's budget spent on what the
# CPU could not afford: the full encoder fine-tuned (no frozen stages), batch 16, more steps; bf16 autocast
# is the trainer's default on CUDA. MINUTES (default 8) bounds training so the call ends inside 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-8}
WORK=/tmp/gpu_train; rm -rf "$WORK"; mkdir -p "$WORK"
cat .gpudata/parts/*/train.tar.part* > "$WORK/train.tar"
(cd "$WORK" && sha256sum -c "$OLDPWD/.gpudata/parts/train.tar.sha256")
tar xf "$WORK/train.tar" -C "$WORK"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 SAMCELL_RT_HOME="$WORK/home"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
data=(); for source in "$WORK"/staged/data/*; do data+=(--data "$source"); done
python3 -c "from samcell_rt.cli import main; main()" train --config lite --init "$WORK/staged/lite_medsam.pth" \
    "${data[@]}" --source-weight "$WORK/staged/data/bacteria=3" --device cuda --batch-size 16 \
    --steps-per-epoch 50 --warmup-steps 100 --focus 0.7 \
    --freeze-stages 0 --epochs 60 --patience 12 --val-fraction 0.15 --max-minutes "$MINUTES" --out "$WORK/run" \
    2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
if [ -n "${OUT:-}" ]; then cp "$WORK/run/best.safetensors" "$WORK/run/best.json" "$OUT/"; fi
echo "gpu_train: checkpoint in ${OUT:-$WORK/run}; export here with: samcell-rt export best.safetensors --out samcell-lite.onnx --name samcell-lite"
