"""Pick the mixed-precision mode: `auto` asks the hardware instead of assuming.

bf16 autocast roughly doubles CPU training speed where the CPU has native bf16
(AVX512-BF16 or AMX); elsewhere it is slower than fp32, so we fall back.
"""

from __future__ import annotations


def cpu_supports_bf16() -> bool:
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device_type: str) -> str:
    """Return one of fp32 / bf16 / fp16 for the requested mode on this device."""
    import torch

    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def accelerate_mixed_precision(precision: str) -> str:
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
