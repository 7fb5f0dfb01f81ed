"""Setup steps shared by finetune, eval and predict; each takes explicit arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmctl.errors import ModelError, UsageError


def quiet_libraries() -> None:
    """Keep library chatter (advisories, progress bars) off the user's terminal and CI logs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def make_accelerator(precision: str, device: str | None = None):
    """An Accelerator for the resolved precision; works alone, under torchrun or accelerate launch."""
    from accelerate import Accelerator

    from llmctl.train.precision import accelerate_mixed_precision

    cpu = device == "cpu"
    return Accelerator(mixed_precision=accelerate_mixed_precision(precision), cpu=cpu)


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


def auto_class(name: str):
    import transformers

    return getattr(transformers, name)


def task_for_model(model_dir: Path, recipe=None):
    """Rebuild the task that trained `model_dir` from its llmctl.json (or a recipe)."""
    from transformers import AutoConfig

    from llmctl.runs import TASK_FILE
    from llmctl.tasks import TASKS

    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} is not a saved model or run directory (no config.json).",
            "Pass a run directory made by `llmctl finetune` or a save_pretrained folder.",
        )
    config = AutoConfig.from_pretrained(model_dir)
    saved = json.loads((model_dir / TASK_FILE).read_text()) if (model_dir / TASK_FILE).is_file() else None
    if recipe is not None:
        if saved is not None:
            from llmctl.config.load import check_recipe_task

            check_recipe_task(recipe, saved.get("task"), str(model_dir))
        meta = {"task": recipe.task, "data": recipe.data.model_dump(mode="json")} | (
            {"precision": saved["precision"]} if saved and "precision" in saved else {})
    elif saved is not None:
        meta = saved
    else:
        # A plain transformers classifier: assume one text column named "sentence"/"text".
        meta = {"task": "classification", "data": {"text_columns": ["sentence"]}}
    if meta["task"] not in TASKS:
        raise UsageError(f"{model_dir} was trained for task '{meta['task']}', which this llmctl does not know.")
    return TASKS[meta["task"]].from_model(meta, config), config


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_precision(requested: str | None) -> None:
    if requested is not None and requested not in PRECISIONS:
        raise UsageError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}.",
                         "Leave it out to use the precision the model was trained in.")


def trained_precision(model_dir: Path) -> str | None:
    """The precision a run trained (and evaluated) in: llmctl.json, or the run's environment.json
    for models saved before llmctl.json recorded it; None for models llmctl did not train."""
    from llmctl.runs import TASK_FILE

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
    from llmctl.train.precision import cpu_supports_bf16, resolve_precision

    check_precision(requested)
    if requested == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 needs a GPU.", "On a CPU use bf16 or fp32 (or leave --precision out).")
    chosen = requested or trained_precision(model_dir) or "auto"
    if requested is None and device == "cpu" and (chosen == "fp16" or (chosen == "bf16" and not cpu_supports_bf16())):
        chosen = "auto"
    return resolve_precision(chosen, device)
