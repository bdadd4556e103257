#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: `infoprune serve` with SQLite, local artifact
# storage and its in-process worker, in a fresh state folder. The shipped demo VLM (and its calibration
# and evaluation sets) goes into the server's model root, is submitted as a job, followed to its end,
# downloaded and loaded back; the job's report is printed.
#   bash scripts/demo.sh [--target-flops R] [--output DIR] [--keep-state]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

target=0.5 output="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --target-flops) target=$2; shift 2 ;;
        --output) output=$2; shift 2 ;;
        --keep-state) keep=1; shift ;;
        *) echo "usage: $0 [--target-flops R] [--output DIR] [--keep-state]" >&2; exit 2 ;;
    esac
done
output=${output:-out/demo-$target-$(date +%Y%m%d-%H%M%S)}
py=.venv/bin/python cli=.venv/bin/infoprune

state=$(mktemp -d "${TMPDIR:-/tmp}/infoprune-demo.XXXXXX")
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    if [ "$keep" = 1 ]; then echo "server state kept in $state"; else rm -rf "$state"; fi
}
trap cleanup EXIT

export INFOPRUNE_DATA_DIR="$state/data" INFOPRUNE_MODEL_ROOT="$state/models"
INFOPRUNE_PORT=$($py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export INFOPRUNE_PORT
$py - <<'EOF'
import os, shutil
from pathlib import Path
from infoprune_core.demo import demo_calibration_path, demo_eval_path, demo_model_dir

root = Path(os.environ["INFOPRUNE_MODEL_ROOT"]) / "demo-vlm"
shutil.copytree(demo_model_dir(), root)
shutil.copytree(demo_calibration_path().parent, root / "calibration")
shutil.copytree(demo_eval_path().parent, root / "eval")
EOF

echo "starting the embedded server on 127.0.0.1:$INFOPRUNE_PORT (log: $state/server.log)"
$cli serve > "$state/server.log" 2>&1 &
server=$!
export INFOPRUNE_API_URL="http://127.0.0.1:$INFOPRUNE_PORT"
for _ in $(seq 120); do
    if $py -c 'import os, httpx; httpx.get(os.environ["INFOPRUNE_API_URL"] + "/readyz").raise_for_status()' 2>/dev/null; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat "$state/server.log" >&2; exit 1; }
    sleep 0.5
done
INFOPRUNE_API_KEY=$($cli keys create --tenant demo 2>/dev/null)
export INFOPRUNE_API_KEY

options='{"calibration": "demo-vlm/calibration/calibration.jsonl", "eval_set": "demo-vlm/eval/eval.jsonl"}'
$cli jobs submit demo-vlm --target-flops "$target" --config "$options" --wait --download "$output"
job=$($cli jobs list --limit 1 --json | $py -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
$cli jobs report "$job"
$py -c 'import sys; from infoprune_core import load_compressed; print(type(load_compressed(sys.argv[1])).__name__, "loaded from", sys.argv[1])' "$output"
