"""`llmctl finetune RECIPE --dry-run`: everything finetune checks and decides before it trains, with
nothing trained, no weights loaded and no run directory created.

    report, plan = dry_run(recipe)   # the doctor's report plus the model-config findings; the plan dict
    code = dry_run_exit_code(report, plan, strict=False)   # what `finetune --dry-run` exits with

The plan: steps per epoch and in total, warmup, precision, device and processes, effective batch
size, the output directory and whether finetune would refuse it (RunDir.check changes nothing).
"""

from __future__ import annotations

import math

from llmctl.core.preflight import preflight


def dry_run(recipe, resume: bool = False, overwrite: bool = False, device: str | None = None,
            force_resume: bool = False) -> tuple:
    """finetune's own pre-flight (llmctl.core.preflight), with the data read by the doctor and a
    refused output directory kept in the plan; the model checks raise with finetune's own exit codes
    (5: no such model or head, 2: a setting the model cannot take)."""
    from llmctl.doctor.run import processes
    from llmctl.models.precision import resolve_precision

    checked = preflight(recipe, resume=resume, overwrite=overwrite, device=device, force_resume=force_resume,
                        dry_run=True)
    report, mode, dev = checked.report, checked.mode, checked.device
    cfg = recipe.train
    plan = {"output_dir": str(recipe.output_dir), "mode": mode, "refused": checked.refused, "device": dev,
            "precision": resolve_precision(cfg.precision, dev), "processes": processes(),
            "batch_size": cfg.batch_size, "per_process_batch_size": cfg.batch_size // max(1, processes()),
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "effective_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps, "epochs": cfg.epochs,
            "max_steps": cfg.max_steps}
    if checked.lora:
        lora = checked.lora
        plan |= {"trainable_parameters": lora["trainable_parameters"], "total_parameters": lora["total_parameters"],
                 "lora_target_modules": lora["target_modules"]}
    if report.epoch:
        total = report.epoch["total_steps"]
        plan |= {"train_rows": report.epoch["train_rows"], "steps_per_epoch": report.epoch["steps_per_epoch"],
                 "total_steps": total,
                 "warmup_steps": cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(total * cfg.warmup_ratio)}
    return report, plan


def dry_run_exit_code(report, plan: dict, strict: bool = False) -> int:
    """3 on data errors (and, with --strict, warnings), else 2 when the output dir would be refused, else 0."""
    from llmctl.errors import EXIT_USAGE

    return report.exit_code(strict) or (EXIT_USAGE if plan["refused"] else 0)
