"""The task that trained a saved model, rebuilt from its llmctl.json (or from a recipe): what eval,
predict, export and the report need to read a model's inputs and outputs as it was trained."""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import ModelError, UsageError


def task_for_model(model_dir: Path, recipe=None):
    """Rebuild the task that trained `model_dir` from its llmctl.json (or a recipe)."""
    from transformers import AutoConfig

    from llmctl.runs.files import read_json
    from llmctl.models.gate import pretrained
    from llmctl.models.saved import TASK_FILE
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
        if getattr(recipe, "preference", None) is not None:
            meta["preference"] = recipe.preference.model_dump(mode="json")
        if saved and "reference" in saved:  # the model a preference run started from
            meta["reference"] = saved["reference"]
    elif saved is not None:
        meta = saved
    else:
        # A plain transformers classifier: assume one text column named "sentence"/"text".
        meta = {"task": "classification", "data": {"text_columns": ["sentence"]}}
    if meta.get("task") not in TASKS:
        raise UsageError(f"{model_dir} was trained for task '{meta.get('task')}', which this llmctl does not know.")
    return TASKS[meta["task"]].from_model(meta, config), config
