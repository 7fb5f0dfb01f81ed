"""`llmctl predict MODEL --fill-mask TEXT`: the likeliest tokens for each mask in a text, from
any checkpoint with a masked-LM head (a `task: masked-lm` run, bert-base-uncased, ...).

The texts go through the masked-lm task's prediction path (llmctl.tasks.masked_lm), so a run's
own data settings (max_length) apply; a plain checkpoint gets the task's defaults. A checkpoint
without the head is refused from its config, before any weight loads: its head would start at
random and every answer would be noise. `fill_mask_task` builds that task; core.prediction.run_predict
runs the texts through predict with it.
"""

from __future__ import annotations

from llmctl.errors import ModelError


def fill_mask_task(model_dir, top_k: int):
    """The masked-lm task that fills masks with `model_dir`: its own when it is a masked-lm run."""
    from transformers import AutoConfig

    from llmctl.models.adapters import is_adapter_dir
    from llmctl.config.schema import ModelConfig
    from llmctl.models.quiet import quiet_libraries
    from llmctl.models.load import model_max_positions
    from llmctl.models.gate import pretrained
    from llmctl.runs.files import read_json
    from llmctl.models.saved import TASK_FILE
    from llmctl.tasks.masked_lm import MaskedLMData, MaskedLMTask, has_mlm_head

    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} is not a saved model or run directory (no config.json).",
                         "Pass a run directory made by `llmctl finetune` or a save_pretrained folder.")
    quiet_libraries()
    saved = read_json(model_dir / TASK_FILE, root=model_dir) or {}
    config = pretrained(AutoConfig, model_dir)
    if saved.get("task") != "masked-lm" and not has_mlm_head(config) and not is_adapter_dir(model_dir):
        what = ", ".join(config.architectures or []) or f"a {config.model_type} model"
        trained = f", trained for task {saved['task']}" if saved.get("task") else ""
        raise ModelError(f"{model_dir} has no masked-LM head ({what}{trained}), so it cannot fill masks.",
                         "Use a checkpoint saved with one (e.g. BertForMaskedLM), or train one with task: masked-lm.")
    if saved.get("task") == "masked-lm":
        data = MaskedLMData.model_validate(saved["data"])
    else:
        limit = model_max_positions(ModelConfig(name_or_path=str(model_dir)))
        data = MaskedLMData(max_length=min(limit or 512, 512))
    return MaskedLMTask(data.model_copy(update={"top_k": top_k}))
