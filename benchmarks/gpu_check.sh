#!/usr/bin/env bash
# GPU check for a lent H100/H200, one prepared script, under 8 minutes. NOT RUN YET: no GPU was lent
# to the task that wrote it; the first run will tell what needs fixing.
#
# Records in benchmarks/results/gpu_<gpu>.json (and $OUT when set): `pytest -m gpu`; `samcell-rt bench`
# with the CUDA engine for samcell-lite and ViT-B, fp32 and fp16, batch 1/8/32 on 2048x2048; torch fp16
# of the same models as a reference; and an attempt to run a TensorRT-RTX engine (expected to be
# refused on compute capability 9.0; what happens is recorded).
#
# The device machine has torch, onnxruntime (CPU), numpy, scipy, scikit-image, opencv, numba, tifffile,
# click and cuda-bindings, and cannot download. What it lacks travels as wheels in .whl/ (ignored):
# `bash benchmarks/gpu_stage.sh` downloads them here. onnxruntime-gpu (244 MiB) is over the 64 MiB a
# call may carry, so gpu_stage.sh splits it into .whl/parts/*; carry one part per call
# (`carry: [".whl/parts/NN"]`, command `true`: ignored files stay on the warm machine), then run this
# script carrying `.whl/small`. It reassembles the wheel and checks its sha256 first.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
WORK=/tmp/gpu_check; mkdir -p "$WORK"
if ls .whl/parts/*/onnxruntime_gpu-* >/dev/null 2>&1; then
    name=$(basename "$(ls .whl/parts/*/onnxruntime_gpu-* | head -1)" | sed 's/\.part[0-9]*$//')
    cat .whl/parts/*/"$name".part* > "$WORK/$name"
    (cd "$WORK" && sha256sum -c "$OLDPWD/.whl/small/$name.sha256") || echo "onnxruntime-gpu wheel incomplete: CUDA bench will fail"
fi
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/small/*.whl "$WORK"/*.whl 2>&1 | tail -3
export PYTHONPATH="$PWD:/tmp/site" PYTHONUNBUFFERED=1 SAMCELL_RT_HOME="$WORK/home"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -c 'A-Za-z0-9\n' '_' | sed 's/_*$//')
RESULT="benchmarks/results/gpu_${GPU:-unknown}.json"
# 1) the GPU tests (about a minute)
timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider --junitxml "$WORK/pytest.xml" tests/runtime 2>&1 | tail -15
python3 - "$WORK/pytest.xml" "$WORK/pytest.json" <<'PY'
import json, sys, xml.etree.ElementTree as ET
try:
    suite = ET.parse(sys.argv[1]).getroot().find("testsuite") or ET.parse(sys.argv[1]).getroot()
    cases = [{"test": c.get("name"), "seconds": float(c.get("time", 0)),
              "outcome": next((t.tag for t in c if t.tag in ("failure", "error", "skipped")), "passed"),
              "message": next((t.get("message", "")[:500] for t in c), "")} for c in suite.iter("testcase")]
except (OSError, ET.ParseError) as exc:
    cases = [{"error": str(exc)}]
json.dump(cases, open(sys.argv[2], "w"), indent=2)
PY
# 2-4) graphs, CUDA bench, torch fp16 reference, TensorRT-RTX attempt (about 5 minutes)
timeout $((470 - ($(date +%s) - START))) python3 benchmarks/gpu_check.py "$WORK" "$RESULT" "$WORK/pytest.json"
[ -n "${OUT:-}" ] && cp "$RESULT" "$OUT/" 2>/dev/null
echo "gpu_check: $(( $(date +%s) - START )) s, result $RESULT"
