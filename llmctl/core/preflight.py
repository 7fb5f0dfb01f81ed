"""The first of finetune's three steps: every check that needs no model weights, in one function, so
`finetune`, `finetune --dry-run` (llmctl.core.plan) and the doctor's plan cannot drift apart.

    checked = preflight(recipe, resume=False)        # raises the error finetune exits with
    checked = preflight(recipe, dry_run=True)        # the dry run: data through the doctor, refusals kept

Order matters for the user: the output directory is refused first, then the data is read, then
the model source, config and size are checked, and nothing is written anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmctl.errors import UsageError
from llmctl.runs.directory import RunDir
from llmctl.train import tracking

if TYPE_CHECKING:
    from llmctl.config.schema import Recipe
    from llmctl.doctor.report import Report
    from llmctl.tasks.base import Task


@dataclass
class Checked:
    """What the checks found out, which building the run starts from."""

    recipe: Recipe
    mode: str  # fresh | resume | overwrite
    run: RunDir
    device: str  # cpu | cuda | mps
    task: Task  # labels fitted on the training split, head picked for the model's architecture
    train_split: object
    eval_split: object | None
    test_split: object | None
    force_resume: bool = False
    base: str | None = None  # a LoRA run's base model: the path or hub id (a GGUF base by its file)
    base_sha256: dict | None = None  # its weight files' digests, when already hashed for --resume
    lora: dict | None = None  # the adapter a LoRA run will train (layers, trainable parameters), from the config
    refused: str | None = None  # dry run only: why finetune would refuse the output directory
    report: Report | None = None  # dry run only: the doctor's report on the data


def preflight(recipe: Recipe, resume: bool = False, overwrite: bool = False, device: str | None = None,
              force_resume: bool = False, dry_run: bool = False) -> Checked:
    """Check the flags, the output directory, the data, the model source, config and size, and the
    settings against the model, raising the error finetune exits with. With dry_run the data is read
    by the doctor (a refused file becomes a finding in `report`, not an exception) and a refused
    output directory is kept in `refused`, so the dry run can show everything at once."""
    from llmctl.console import note, tell
    from llmctl.doctor.run import processes
    from llmctl.models.devices import device_type
    from llmctl.models.load import check_head_size, check_model_source, check_size, load_config

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other.", "Pass one of them.")
    mode = "resume" if resume else "overwrite" if overwrite else "fresh"
    run = RunDir(Path(recipe.output_dir))
    refused = None
    try:
        # refusals only; nothing written yet (open() checks again, under the lock, that nothing changed)
        run.check(mode, force=force_resume, inputs=local_inputs(recipe), recipe_file=recipe_file(recipe))
    except UsageError as exc:
        if not dry_run:
            raise
        refused = str(exc)
    tracking.check_installed(recipe.train.report_to)
    dev = device_type(device)
    check_inputs_exist(recipe, dry_run)  # missing data files and a missing model: all named in one error

    # The data, before any model: a wrong column fails in seconds.
    report = None
    if dry_run:
        from llmctl.core.doctor import diagnose_with_context

        report, ctx = diagnose_with_context(recipe)
        task, splits = ctx.task, ctx.splits
        train_split, eval_split, test_split = (splits.get(role) for role in ("train", "validation", "test"))
    else:
        from llmctl.tasks import TASKS

        task = TASKS[recipe.task].for_recipe(recipe)
        train_split = tell(task.load_split("train", recipe.data.train))
        task = task.with_labels(task.fit(train_split))
        eval_split = tell(task.load_split("validation", recipe.data.validation)) if recipe.data.validation else None
        test_split = tell(task.load_split("test", recipe.data.test)) if recipe.data.test else None

    # The model from its config alone: source, head, size, and the settings it must take.
    check_model_source(recipe.model)
    for item in task.check_model(recipe.model) or ():  # e.g. a head the checkpoint lacks, started at random
        note(item.text)
    config = load_config(recipe.model)
    task = task.for_model(config)  # multiple-choice picks its head by architecture
    check_size(recipe.model, task.auto_model, full_finetune=recipe.peft is None, config=config)
    check_metric_for_best(recipe, task)  # after for_model: a task's metrics may depend on the architecture
    check_max_length(recipe)
    check_head_size(recipe, task)  # transformers would refuse it only after the run started
    if recipe.distill is not None or recipe.model.init_from is not None:
        from llmctl.core import distill

        distill.check(recipe, task, config)  # the teacher's vocabulary and labels, the layers to keep
    base = base_sha256 = lora = None
    if recipe.peft is not None:
        from llmctl.models.adapters import check_before_load
        from llmctl.models.gguf import path as gguf_path
        from llmctl.models.trust import base_digests, check_base_unchanged, recorded_base

        check_before_load(recipe.peft, dev)
        # `base`: a GGUF base is named by its file, so an adapter run can load it back (llmctl.models.adapters).
        base = gguf_path(recipe.model.name_or_path, recipe.model.gguf_file)
        lora = adapter_plan(recipe, task, base)  # target_modules matching nothing: refused here, dry run too
        if resume:
            # A LoRA run continues only on the base it started on: a base replaced at the same path
            # would pair the saved adapter with other weights.
            base_sha256 = base_digests(base)
            check_base_unchanged(base, recorded_base(run.path), f"run {run.path}", base_sha256)
    # WORLD_SIZE is what a launch sets, known before anything loads (build checks the accelerator's own count).
    check_batch_split(recipe.train.batch_size, processes())
    return Checked(recipe=recipe, mode=mode, run=run, device=dev, task=task, train_split=train_split,
                   eval_split=eval_split, test_split=test_split, force_resume=force_resume, base=base,
                   base_sha256=base_sha256, lora=lora, refused=refused, report=report)


def check_inputs_exist(recipe: Recipe, dry_run: bool = False) -> None:
    """When a local data file is missing: every missing one and the model source, checked for
    existence only (no file is read), so that a recipe with several wrong paths names them all at
    once rather than one per attempt. One problem raises its own error; several raise one listing
    each, with the first one's exit code (data before model, the order the checks run in). The dry
    run leaves missing data alone to the doctor's report, unless the model is missing too (its
    error would otherwise stop the dry run before the report shows the data's)."""
    from llmctl.data.inputs import file_format, is_pattern
    from llmctl.data.sources import existing_files
    from llmctl.errors import LlmctlError
    from llmctl.models.load import check_model_source

    problems: list[LlmctlError] = []
    for role in ("train", "validation", "test"):
        spec = getattr(recipe.data, role, None)
        # Only a plain file path with a data extension: split names, folders, globs and a task's
        # own forms (CoNLL files without an extension) are left to the task's reader.
        if not isinstance(spec, str) or file_format(spec) is None or is_pattern(spec):
            continue
        try:
            existing_files(Path(spec).expanduser(), f"data.{role}")  # the reader's own "does not exist"
        except LlmctlError as exc:
            problems.append(exc)
    if not problems:
        return  # the model is checked in its own place, after the data has been read
    try:
        check_model_source(recipe.model)
    except LlmctlError as exc:
        named = str(exc) if str(exc).startswith("model.") else f"model.name_or_path: {exc}"
        problems.append(type(exc)(named))
    else:
        if dry_run:
            return
    if len(problems) == 1:
        raise problems[0]
    lines = "\n".join(f"  {p}" for p in problems)
    raise type(problems[0])(f"{len(problems)} problems with the recipe's inputs:\n{lines}",
                            "\nFix each one; `llmctl finetune RECIPE --dry-run` checks them again without training.")


def adapter_plan(recipe: Recipe, task: Task, base: str) -> dict:
    """The LoRA adapter the run will wrap, built on an empty model from the config (llmctl.models.adapters)."""
    from llmctl.models.adapters import plan_adapter
    from llmctl.models.load import auto_class, load_config

    config = load_config(recipe.model, **task.model_kwargs())
    return plan_adapter(auto_class(task.auto_model), config, recipe.peft, task.auto_model, base,
                        recipe.model.trust_remote_code)


def check_batch_split(batch_size: int, processes: int) -> None:
    """train.batch_size is the global batch: each process takes an equal share."""
    if batch_size % processes:
        raise UsageError(
            f"train.batch_size {batch_size} does not split evenly over {processes} processes.",
            "Choose a batch size divisible by the number of processes.",
        )


def local_inputs(recipe: Recipe) -> dict[str, Path]:
    """The run's own model and data files, which --overwrite must never delete."""
    found = {}
    for key in ("train", "validation", "test"):
        spec = getattr(recipe.data, key, None)
        if spec and Path(spec).expanduser().exists():
            found[f"data.{key} file"] = Path(spec)
    if recipe.model.name_or_path and Path(recipe.model.name_or_path).expanduser().exists():
        found["model (model.name_or_path)"] = Path(recipe.model.name_or_path)
    return found


def recipe_file(recipe: Recipe) -> Path | None:
    """The recipe's own file, which --resume and --overwrite must not rewrite or delete."""
    source = getattr(recipe, "_source", None)
    return Path(source) if source and Path(source).is_file() else None


def check_metric_for_best(recipe: Recipe, task: Task) -> None:
    """A misspelled train.metric_for_best would otherwise fail at the first evaluation."""
    import difflib

    wanted, names = recipe.train.metric_for_best, task.metric_names()
    if wanted is None or names is None or wanted in names:
        return
    close = difflib.get_close_matches(wanted, names, n=1)
    raise UsageError(
        f"train.metric_for_best: '{wanted}' is not a metric of task {recipe.task}; it reports {', '.join(names)}.",
        f"Did you mean '{close[0]}'?" if close else "Use one of those names.",
    )


def check_max_length(recipe: Recipe) -> None:
    """A max_length past the model's position table crashes mid-training (index out of range)."""
    from llmctl.models.load import model_max_positions

    limit = model_max_positions(recipe.model)
    for key in ("max_length", "max_target_length"):
        value = getattr(recipe.data, key, None)
        if limit and value and value > limit:
            raise UsageError(
                f"data.{key} {value} is more than model {recipe.model.label} can take ({limit} positions).",
                f"Set data.{key} to at most {limit} (e.g. --set data.{key}={limit})"
                + (", or raise the config's position table." if recipe.model.scratch else "."),
            )
