"""`llmctl recipes list | show NAME | copy NAME DEST`: the shipped recipes (no heavy imports)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from llmctl.cli import report_errors

recipes_app = typer.Typer(help="List, show and copy the recipes that ship with llmctl.", no_args_is_help=True)


def _first_command(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# llmctl "):
            return line[2:]
    return ""


@recipes_app.command("list")
@report_errors
def list_():
    """Short names of the shipped recipes and the command that runs each."""
    from llmctl.config.load import list_recipes

    found = list_recipes()
    width = max((len(n) for n in found), default=0)
    for name, path in found.items():
        print(f"{name:<{width}}  {_first_command(path)}")


@recipes_app.command("show")
@report_errors
def show(name: str = typer.Argument(..., help="Short name or path.")):
    """Print a recipe."""
    from llmctl.config.load import resolve_recipe

    print(resolve_recipe(name).read_text(encoding="utf-8"), end="")


@recipes_app.command("copy")
@report_errors
def copy(name: str = typer.Argument(..., help="Short name."), dest: str = typer.Argument(..., help="File or folder.")):
    """Copy a recipe to edit it (never overwrites an existing file)."""
    from llmctl.config.load import resolve_recipe
    from llmctl.errors import UsageError

    source = resolve_recipe(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise UsageError(f"{target} already exists.", "Choose another destination.")
    shutil.copyfile(source, target)
    print(f"copied {source} -> {target}")
