"""`llmctl finetune RECIPE --dry-run`: everything finetune checks and decides before it trains, with
nothing trained, no weights loaded and no run directory created.

    report, plan = dry_run(recipe)   # the doctor's report plus the model-config findings; the plan dict

The plan: steps per epoch and in total, warmup, precision, device and processes, effective batch
size, the output directory and whether finetune would refuse it (RunDir.check changes nothing).
"""

from __future__ import annotations

import math
from pathlib import Path

from llmctl.errors import UsageError


def dry_run(recipe, resume: bool = False, overwrite: bool = False, device: str | None = None,
            force_resume: bool = False) -> tuple:
    from llmctl.console import RowsProgress
    from llmctl.core.finetune import _check_max_length, _check_metric_for_best, _local_inputs, _recipe_file
    from llmctl.models.devices import device_type
    from llmctl.doctor.run import diagnose_with_context, processes
    from llmctl.models.load import check_head_size, check_source
    from llmctl.models.precision import resolve_precision
    from llmctl.runs.directory import RunDir

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other.", "Pass one of them.")
    mode = "resume" if resume else "overwrite" if overwrite else "fresh"
    dev = device_type(device)
    refused = None
    try:
        RunDir(Path(recipe.output_dir)).check(mode, force=force_resume, inputs=_local_inputs(recipe),
                                              recipe_file=_recipe_file(recipe))
    except UsageError as exc:
        refused = str(exc)
    report, ctx = diagnose_with_context(recipe, RowsProgress)
    # The model checks finetune makes before loading weights, from config.json alone: they raise
    # with finetune's own exit codes (5: no such model or head, 2: a setting the model cannot take).
    check_source(recipe.model.name_or_path, recipe.model.allow_pickle_weights, recipe.model.gguf_file)
    ctx.task.check_model(recipe.model)
    _check_max_length(recipe)
    _check_metric_for_best(recipe, ctx.task)
    check_head_size(recipe, ctx.task)
    if recipe.peft is not None:
        from llmctl.models.adapters import check_before_load

        check_before_load(recipe.peft, dev)
    cfg = recipe.train
    if cfg.batch_size % processes():
        raise UsageError(f"train.batch_size {cfg.batch_size} does not split evenly over {processes()} processes.",
                         "Choose a batch size divisible by the number of processes.")
    plan = {"output_dir": str(recipe.output_dir), "mode": mode, "refused": refused, "device": dev,
            "precision": resolve_precision(cfg.precision, dev), "processes": processes(),
            "batch_size": cfg.batch_size, "per_process_batch_size": cfg.batch_size // max(1, processes()),
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "effective_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps, "epochs": cfg.epochs,
            "max_steps": cfg.max_steps}
    if report.epoch:
        total = report.epoch["total_steps"]
        plan |= {"train_rows": report.epoch["train_rows"], "steps_per_epoch": report.epoch["steps_per_epoch"],
                 "total_steps": total,
                 "warmup_steps": cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(total * cfg.warmup_ratio)}
    return report, plan
