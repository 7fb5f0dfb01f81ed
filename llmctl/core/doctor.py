"""`llmctl doctor` as a function: the recipe's data read exactly as finetune reads it (task.load_split,
the training features through the feature cache), the tokenizer loaded, never the model weights.

    report = diagnose(recipe)       # llmctl.doctor.report.Report
    sys.exit(report.exit_code(strict))
"""

from __future__ import annotations

from llmctl.doctor.report import Report
from llmctl.doctor.run import ROLES, Context, epoch_figures, family_of
from llmctl.errors import DataError


def diagnose(recipe) -> Report:
    return diagnose_with_context(recipe)[0]


def diagnose_with_context(recipe) -> tuple[Report, Context]:
    """The report, and what it was made from (finetune --dry-run checks the model against ctx.task)."""
    from llmctl.console import RowsProgress, tell
    from llmctl.models.quiet import USER_TOKENIZERS_PARALLELISM
    from llmctl.models.quiet import quiet_libraries
    from llmctl.data.prepare import train_features
    from llmctl.core.tokenizer import new_model_size, tokenizer_for
    from llmctl.models.load import check_model_source, check_size
    from llmctl.tasks import TASKS

    report = Report(recipe.task)
    task = TASKS[recipe.task].for_recipe(recipe)
    specs = {role: getattr(recipe.data, role) for role in ROLES if getattr(recipe.data, role, None)}
    # The model first, as finetune checks it: a missing path fails in seconds (one hub probe, not
    # the libraries' retries), and a config too big for this machine is refused here, not in training.
    check_model_source(recipe.model)
    quiet_libraries()
    check_size(recipe.model, task.auto_model, full_finetune=recipe.peft is None)
    report.model = new_model_size(recipe.model, task.auto_model)
    early = {}
    if recipe.model.scratch and not isinstance(recipe.model.tokenizer, str):
        early["train"] = tell(task.load_split("train", recipe.data.train))  # the tokenizer is trained on it
    tokenizer = tokenizer_for(recipe, task, early.get("train"))
    ctx = Context(recipe, task, tokenizer, specs)
    for role, spec in specs.items():
        if role != "train" and "train" in ctx.refused:
            # Without train's labels the other splits cannot be checked against them, but they can
            # be read: a missing or malformed file is named now, not on the run after train is fixed.
            try:
                ctx.task.load_split(role, spec, labelled=False)
            except DataError as exc:
                ctx.refused[role] = exc
            continue
        try:
            ctx.splits[role] = early.get(role) or tell(ctx.task.load_split(role, spec))
            if role == "train":
                ctx.task = ctx.task.with_labels(ctx.task.fit(ctx.splits[role]))
                ctx.train_features, info = train_features(ctx.task, ctx.splits[role], tokenizer, recipe.data,
                                                          recipe.data.cache, RowsProgress, USER_TOKENIZERS_PARALLELISM)
                tell(ctx.train_features)
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
