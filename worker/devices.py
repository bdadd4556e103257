"""Device classes to torch devices, and whether this process can use them."""

from __future__ import annotations

import subprocess
import sys


def device_for(device_class: str) -> str:
    """``gpu``, ``gpu-a100``, ...: CUDA; every other class runs on the CPU."""
    return "cuda" if device_class.startswith("gpu") else "cpu"


def unusable(device: str) -> str | None:
    """Why this process cannot run jobs on ``device``, or None when it can."""
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return f"no usable CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})"
    return None


def unusable_in_fresh_process(device: str) -> str | None:
    """As :func:`unusable`, asked in a child process: a worker's main process must not initialise CUDA
    before it forks its pool (the children could not use it then)."""
    if device == "cpu":
        return None
    probe = f"from worker.devices import unusable; print(unusable({device!r}) or '')"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return f"cannot import torch to probe {device}: {out.stderr.strip().splitlines()[-1:] or out.returncode}"
    return out.stdout.strip() or None
