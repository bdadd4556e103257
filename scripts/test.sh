#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite (PostgreSQL and Redis must be running;
# the tests start their own S3-compatible server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy infoprune_core infoprune_jobs infoprune_client api worker benchmarks
exec .venv/bin/python -m pytest -q "$@"
