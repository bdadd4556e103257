#!/usr/bin/env bash
# Set up, then compress the shipped demo VLM on the embedded default and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/infoprune demo "$@"
