"""Setup steps shared by finetune, eval and predict; each takes explicit arguments."""

from __future__ import annotations

import os
from pathlib import Path

from llmctl.errors import ModelError, UsageError

# The user's own TOKENIZERS_PARALLELISM, read before quiet_libraries sets a default
# (llmctl.data.prepare turns parallel tokenizing on only when the user left it unset).
USER_TOKENIZERS_PARALLELISM = os.environ.get("TOKENIZERS_PARALLELISM")


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


def make_accelerator(precision: str, device: str | None = None, trackers: dict | None = None):
    """An Accelerator for the resolved precision; works alone, under torchrun or accelerate launch
    (with --use_fsdp too, CPU included: llmctl.train.sharding). `trackers`: log_with and where
    they write (llmctl.train.tracking.accelerator_options)."""
    from accelerate import Accelerator

    from llmctl.models.precision import accelerate_mixed_precision
    from llmctl.train.sharding import check_fsdp_request, fsdp_plugin_for_cpu, switch_on_cpu_fsdp

    cpu = device == "cpu"
    check_fsdp_request(cpu)
    plugin = fsdp_plugin_for_cpu(cpu)
    accelerator = Accelerator(mixed_precision=accelerate_mixed_precision(precision), cpu=cpu, fsdp_plugin=plugin,
                              **(trackers or {}))
    switch_on_cpu_fsdp(accelerator, plugin)
    return accelerator


def auto_class(name: str):
    import transformers

    return getattr(transformers, name)


def task_for_model(model_dir: Path, recipe=None):
    """Rebuild the task that trained `model_dir` from its llmctl.json (or a recipe)."""
    from transformers import AutoConfig

    from llmctl.runs.files import read_json
    from llmctl.models.load import pretrained
    from llmctl.runs.directory import TASK_FILE
    from llmctl.tasks import TASKS

    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} is not a saved model or run directory (no config.json).",
            "Pass a run directory made by `llmctl finetune` or a save_pretrained folder.",
        )
    trust = bool(recipe is not None and recipe.model.trust_remote_code)
    config = pretrained(AutoConfig, model_dir, trust_remote_code=trust)
    saved = read_json(model_dir / TASK_FILE, root=model_dir)
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
    if meta.get("task") not in TASKS:
        raise UsageError(f"{model_dir} was trained for task '{meta.get('task')}', which this llmctl does not know.")
    return TASKS[meta["task"]].from_model(meta, config), config
