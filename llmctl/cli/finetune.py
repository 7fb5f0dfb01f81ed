"""`llmctl finetune RECIPE`: parse flags, load the recipe, run llmctl.core.finetune, render."""

from __future__ import annotations

from typing import Optional

import typer

from llmctl.cli._app import app
from llmctl.cli._options import Device, RecipeArgument, json_flag


@app.command()
def finetune(
    recipe: RecipeArgument,
    # Typer options cannot take an optional value, so the `auto` of `--resume auto` arrives
    # as a second positional argument (before or after the recipe).
    resume_word: Optional[str] = typer.Argument(None, hidden=True, metavar="auto"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                  help="Override a recipe key (repeatable), e.g. --set train.learning_rate=3e-5."),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL",
                                         help="Hub id, folder or .gguf file; same as --set model.name_or_path=..."),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", metavar="DIR",
                                              help="The run directory; same as --set output_dir=..."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", metavar="N", help="Same as --set train.max_steps=..."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Same as --set train.seed=..."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue from the run directory's latest complete checkpoint, or start fresh "
                                "if it has none; never takes over a finished or non-llmctl directory. "
                                "`--resume auto` is the same."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory."),
    force_resume: bool = typer.Option(False, "--force-resume",
                                      help="Resume even if the recipe, data or library versions changed."),
    device: Device = None,
    deterministic: bool = typer.Option(False, "--deterministic",
                                       help="Same as --set train.deterministic=true (torch deterministic algorithms)."),
    json_out: bool = json_flag("Print one JSON object with metrics and training stats."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Check the data (as `llmctl doctor`) and the model config, print the plan "
                                 "(steps, precision, processes, output dir) and stop: no weights, no run directory."),
    strict: bool = typer.Option(False, "--strict", help="With --dry-run: exit 3 on data warnings too."),
):
    """Fine-tune a pretrained model as a recipe describes."""
    from llmctl.tasks.recipe import load_recipe
    from llmctl.console import Console

    from llmctl.core.checks import not_empty

    not_empty(model=model, output_dir=output_dir)
    recipe = _recipe_argument(recipe, resume_word, resume)
    overrides = list(set_)
    if deterministic:
        overrides.append("train.deterministic=true")
    for flag, key in ((model, "model.name_or_path"), (output_dir, "output_dir"),
                      (max_steps, "train.max_steps"), (seed, "train.seed")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    parsed = load_recipe(recipe, overrides)
    if strict and not dry_run:
        from llmctl.errors import UsageError

        raise UsageError("--strict only means something with --dry-run.", "Add --dry-run, or drop --strict.")
    if dry_run:
        _dry_run(parsed, resume or force_resume, overwrite, device, force_resume, json_out, strict)

    from llmctl.core.finetune import finetune as run_finetune
    from llmctl.events import Finished

    console = Console(json_mode=json_out)
    try:
        for event in run_finetune(parsed, resume=resume or force_resume, overwrite=overwrite, device=device,
                                  force_resume=force_resume):
            if isinstance(event, Finished):
                console.result(event.result, "validation metrics (best model)")
            else:
                console.show(event)
    finally:
        console.close()


def _dry_run(recipe, resume: bool, overwrite: bool, device, force_resume: bool, json_out: bool, strict: bool):
    """Print the doctor's report and the plan; exit 3 on data errors, 2 when the output dir would be refused."""
    from llmctl.console import print_json
    from llmctl.core.plan import dry_run, dry_run_exit_code
    from llmctl.cli._doctor_report import render, render_plan

    report, plan = dry_run(recipe, resume=resume, overwrite=overwrite, device=device, force_resume=force_resume)
    code = dry_run_exit_code(report, plan, strict)
    if json_out:
        print_json(report.to_json() | {"plan": plan, "exit_code": code})
    else:
        render(report)
        render_plan(plan)
    raise typer.Exit(code)


def _recipe_argument(recipe: str, word: str | None, resume: bool) -> str:
    """The recipe, once the `auto` of `--resume auto` is taken out of the positional arguments."""
    from llmctl.errors import UsageError

    if word is None:
        return recipe
    if resume and word == "auto":
        return recipe
    if resume and recipe == "auto":  # `llmctl finetune --resume auto RECIPE`
        return word
    raise UsageError(f"Unexpected extra argument '{word}'.",
                     "finetune takes one recipe; the only word allowed after it is `auto` in `--resume auto`.")
