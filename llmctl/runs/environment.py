"""What a run's environment.json records (and `llmctl env` prints): the versions of the libraries
that decide a run's numbers, the platform, the git commit of llmctl and the command line."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# Versions environment.json and `llmctl env` report (None: not installed): the core libraries, then
# those of the extras (LoRA, GGUF, ONNX export and runtime, the run's pictures).
PACKAGES = ("llmctl", "torch", "transformers", "datasets", "accelerate", "evaluate", "tokenizers", "safetensors",
            "peft", "gguf", "onnx", "onnxruntime", "matplotlib")


def environment(device: str | None = None, num_processes: int | None = None) -> dict:
    """Versions and hardware, for reproducing a run (also `llmctl env`)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    if device is not None:
        info["device"] = device
    if num_processes is not None:
        info["num_processes"] = num_processes
    return info
