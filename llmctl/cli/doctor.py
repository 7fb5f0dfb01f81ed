"""`llmctl doctor RECIPE`: check a recipe's data before training (llmctl.doctor), render, exit 0 / 3."""

from __future__ import annotations

import typer

from llmctl.cli._app import app
from llmctl.cli._options import RecipeArgument


@app.command()
def doctor(
    recipe: RecipeArgument,
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. data.max_length=256."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (README: 'Checking data before training')."),
    strict: bool = typer.Option(False, "--strict", help="Exit 3 on warnings too, not only on errors."),
):
    """Check a recipe's data without loading model weights: exit 0 when nothing is wrong, 3 on errors
    (and with --strict on warnings)."""
    from llmctl.tasks.recipe import load_recipe
    from llmctl.cli._doctor_report import render
    from llmctl.console import print_json
    from llmctl.core.doctor import diagnose

    report = diagnose(load_recipe(recipe, list(set_)))
    if json_out:
        print_json(report.to_json() | {"exit_code": report.exit_code(strict)})
    else:
        render(report)
    raise typer.Exit(report.exit_code(strict))
