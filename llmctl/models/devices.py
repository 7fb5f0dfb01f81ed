"""The device every command runs on (`--device`), checked before any data or weights load."""

from __future__ import annotations

from llmctl.errors import UsageError

DEVICES = ("cpu", "cuda", "mps")


def device_type(requested: str | None = None) -> str:
    """The device to run on: `requested` when torch can use it here, else a UsageError (exit 2)
    naming what torch sees; by default cuda when a GPU is visible, else cpu. Every command that
    takes --device calls this before any data or weights load."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = requested.strip().lower()
    if name not in DEVICES:
        tip = " (pick the GPU with CUDA_VISIBLE_DEVICES)" if name.startswith("cuda:") else ""
        raise UsageError(f"--device {requested!r} is not one of {', '.join(DEVICES)}{tip}.",
                         f"Use --device {available_devices()[-1]}, or leave --device out to use the best one here.")
    if name not in available_devices():
        raise UsageError(f"--device {name}: torch {torch.__version__} sees no {name.upper()} device here "
                         f"(available: {', '.join(available_devices())}).",
                         "Use --device cpu, or leave --device out to use the best one here.")
    return name


def available_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found
