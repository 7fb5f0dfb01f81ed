"""`llmctl doctor` as a function: the recipe's data read exactly as finetune reads it (task.load_split,
the training features through the feature cache), the tokenizer loaded, never the model weights.

    report = diagnose(recipe)       # llmctl.doctor.report.Report
    sys.exit(report.exit_code(strict))

Each task family adds its own checks (llmctl.doctor.<family>); a split the reader refuses becomes
an error finding (`read`) instead of stopping the doctor, unless the family's own checks already
found the problem in more detail.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from llmctl.doctor.report import Report
from llmctl.errors import DataError
from llmctl.events import log_notes

ROLES = ("train", "validation", "test")
# The loader's notes, rendered by llmctl.console (route_logs): the doctor returns its report and never prints.
_log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every family's checks read: the task (labels fitted on train), the loaded splits, the
    training features, and the loader's refusals (role -> DataError)."""

    recipe: object
    task: object
    tokenizer: object
    specs: dict
    splits: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)
    train_features: object = None

    def guard(self, report: Report, role: str, check) -> None:
        """Run one split's checks. A DataError is the reader's refusal of the file, kept for that
        split, unless finetune's loader read the split fine: then only the doctor's second look
        failed (a file shape its checks do not know), which a warning says instead of hiding."""
        try:
            check()
        except DataError as exc:
            if role in self.splits:
                report.add("warning", "skipped", role, f"the doctor's checks could not read this split again "
                           f"({exc}); only what the loader reports is shown.")
            else:
                self.refused.setdefault(role, exc)


def family_of(task_name: str):
    from llmctl.doctor import causal_lm, classification, generic, ner, qa, seq2seq

    return {"classification": classification, "ner": ner, "qa": qa, "causal-lm": causal_lm,
            "seq2seq": seq2seq}.get(task_name, generic)


def diagnose(recipe, progress=None) -> Report:
    return diagnose_with_context(recipe, progress)[0]


def diagnose_with_context(recipe, progress=None) -> tuple[Report, Context]:
    """The report, and what it was made from (finetune --dry-run checks the model against ctx.task).
    `progress`: the caller's display of rows tokenized (llmctl.data.prepare.train_features)."""
    from llmctl.models.quiet import USER_TOKENIZERS_PARALLELISM
    from llmctl.models.quiet import quiet_libraries
    from llmctl.data.prepare import train_features
    from llmctl.models.load import check_size, check_source, load_tokenizer
    from llmctl.tasks import TASKS

    report = Report(recipe.task)
    task = TASKS[recipe.task](recipe.data)
    specs = {role: getattr(recipe.data, role) for role in ROLES if getattr(recipe.data, role, None)}
    # The model first, as finetune checks it: a missing path fails in seconds (one hub probe, not
    # the libraries' retries), and a config too big for this machine is refused here, not in training.
    check_source(recipe.model.name_or_path, recipe.model.allow_pickle_weights, recipe.model.gguf_file)
    quiet_libraries()
    check_size(recipe.model, task.auto_model, full_finetune=recipe.peft is None)
    tokenizer = load_tokenizer(recipe.model, **task.tokenizer_kwargs())
    ctx = Context(recipe, task, tokenizer, specs)
    for role, spec in specs.items():
        if role != "train" and "train" in ctx.refused:
            break  # the other splits are checked against train's labels
        try:
            ctx.splits[role] = log_notes(ctx.task.load_split(role, spec), _log)
            if role == "train":
                ctx.task = ctx.task.with_labels(ctx.task.fit(ctx.splits[role]))
                ctx.train_features, info = train_features(ctx.task, ctx.splits[role], tokenizer, recipe.data,
                                                          recipe.data.cache, progress, USER_TOKENIZERS_PARALLELISM)
                log_notes(ctx.train_features, _log)
                report.cache = info["cache"]
        except DataError as exc:
            ctx.refused[role] = exc
    family_of(recipe.task).check(report, ctx)
    for role, exc in ctx.refused.items():
        if not report.has("error", role):
            report.add("error", "read", role, str(exc))
    for role in specs:
        report.splits.setdefault(role, {}).setdefault("source", str(specs[role]))
    if ctx.train_features is not None:
        report.epoch = epoch_figures(len(ctx.train_features), recipe.train)
    return report, ctx


def processes() -> int:
    """Processes a launch would start: torchrun / accelerate launch set WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def epoch_figures(train_rows: int, cfg) -> dict:
    """Optimizer steps one epoch takes; train.batch_size is the global batch, split over the processes."""
    from llmctl.train.loop import plan_steps

    per_epoch, total = plan_steps(train_rows, cfg)
    return {"train_rows": train_rows, "steps_per_epoch": per_epoch, "total_steps": total,
            "batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "processes": processes(), "effective_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps}
