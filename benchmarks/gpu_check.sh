#!/usr/bin/env bash
# The GPU check for a lent H100/H200, as a sequence of device calls that a session makes.
#
#   benchmarks/gpu_check.sh --dry-run [--json]   here: the plan (calls, what each carries and sends, timeouts,
#                                                estimated device time); exit 2 when it does not fit
#   benchmarks/gpu_check.sh --call main          on the device, carrying what the plan says: torch on CUDA through
#                                                samcell-rt's pipeline (benchmarks/gpu_check.py main)
#   benchmarks/gpu_check.sh --call stage         on the device: a staging-only call (reports the parts arrived)
#   benchmarks/gpu_check.sh --call ort           on the device: rebuild onnxruntime-gpu from the parts, bench the
#                                                CUDA engine (benchmarks/gpu_check.py ort)
#
# Each call writes what it measured into $OUT as it goes (gpu_check_<call>.json, <call>.log), so a call cut
# short still returns its results; copy them into benchmarks/results/ here. The onnxruntime-gpu parts are made
# here by benchmarks/gpu_stage.sh (ignored folder .gpu/); ignored files stay on a warm machine between calls.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    --dry-run) shift; exec python3 benchmarks/gpu_plan.py dry-run "$@" ;;
    --call) call=${2:-} ;;
    *) call= ;;
esac
case "$call" in
    main|stage|ort) ;;
    *) echo "usage: $0 --dry-run [--json] | --call main|stage|ort" >&2; exit 64 ;;
esac
OUT=${OUT:-/tmp/gpu_check/out}
WORK=/tmp/gpu_check
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SAMCELL_RT_HOME="$WORK/home"
budget=$(python3 benchmarks/gpu_plan.py budget "$call")
status=$(python3 benchmarks/gpu_plan.py status 2>&1)
echo "gpu_check $call: budget ${budget} s; onnxruntime-gpu $status" | tee -a "$OUT/$call.log"
case "$call" in
    stage) exit 0 ;;
    ort)
        python3 benchmarks/gpu_plan.py assemble "$WORK/onnxruntime-gpu.tar.xz" 2>&1 | tee -a "$OUT/ort.log" \
            || exit 3
        rm -rf "$WORK/ort" && mkdir -p "$WORK/ort" && tar -C "$WORK/ort" -xJf "$WORK/onnxruntime-gpu.tar.xz" \
            && rm "$WORK/onnxruntime-gpu.tar.xz" || exit 3
        export PYTHONPATH="$WORK/ort:$PYTHONPATH" ;;  # shadows the machine's CPU-only onnxruntime
esac
timeout $((budget + 30)) python3 benchmarks/gpu_check.py "$call" --budget "$budget" --out "$OUT" 2>&1 \
    | tee -a "$OUT/$call.log"
