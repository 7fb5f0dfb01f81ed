"""Every command's numeric precision, decided here: `auto` asks the hardware instead of assuming.

    finetune           resolve_precision(train.precision, device)
    eval, predict      inference_precision(--precision, model_dir, device): by default the
                       precision the model trained in
    generate, zero-shot  generation_precision(--precision, device, kind); generate and serve first
                       let generation/tuning.plan time fp32 against bf16 on a CPU for `auto`

bf16 autocast roughly doubles CPU training speed where the CPU has native bf16
(AVX512-BF16 or AMX); elsewhere it is slower than fp32, so `auto` falls back.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def check_precision(requested: str | None) -> None:
    """eval / predict --precision, checked before anything loads."""
    if requested is not None and requested not in PRECISIONS:
        raise UsageError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}.",
                         "Leave it out to use the precision the model was trained in.")


def trained_precision(model_dir: Path) -> str | None:
    """The precision a run trained (and evaluated) in: llmctl.json, or the run's environment.json
    for models saved before llmctl.json recorded it; None for models llmctl did not train."""
    from llmctl.models.saved import TASK_FILE

    for path in (model_dir / TASK_FILE, model_dir.parent / "environment.json"):
        try:
            found = json.loads(path.read_text()).get("precision")
        except (OSError, ValueError, AttributeError):
            continue
        if found in PRECISIONS:
            return found
    return None


def inference_precision(requested: str | None, model_dir: Path, device: str) -> str:
    """eval / predict precision: --precision, else the one the model trained in (an fp32 run's
    losses and regression outputs must not come back rounded to bf16), else auto for the device.
    fp16 is a GPU format: on a CPU it falls back to auto (bf16 where native, else fp32)."""
    check_precision(requested)
    if requested == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 needs a GPU.", "On a CPU use bf16 or fp32 (or leave --precision out).")
    chosen = requested or trained_precision(model_dir) or "auto"
    if requested is None and device == "cpu" and (chosen == "fp16" or (chosen == "bf16" and not cpu_supports_bf16())):
        chosen = "auto"
    return resolve_precision(chosen, device)


def generation_precision(requested: str, device: str, kind: str) -> str:
    """auto: bf16 where the CPU (AVX512-BF16/AMX) or GPU has it; fp16 on older GPUs except T5 (it overflows)."""
    precision = resolve_precision(requested, device)
    if requested == "auto" and precision == "fp16" and kind == "seq2seq":
        return "fp32"
    if precision == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 is not supported on CPU.", "Use bf16 or fp32 (or auto).")
    return precision


def accelerate_mixed_precision(precision: str) -> str:
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
