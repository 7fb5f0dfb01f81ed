"""`llmctl recipes list | show NAME | copy NAME DEST`: the shipped recipes (no heavy imports)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from llmctl.cli._app import report_errors
from llmctl.cli.help import Typer

recipes_app = Typer(help="List, show and copy the recipes that ship with llmctl.", no_args_is_help=True)


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
def show(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`) or path.")):
    """Print a recipe."""
    from llmctl.config.load import resolve_recipe

    print(resolve_recipe(name).read_text(encoding="utf-8"), end="")


@recipes_app.command("copy")
@report_errors
def copy(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`)."),
         dest: str = typer.Argument(..., metavar="DEST", help="File, or folder (a trailing / creates it).")):
    """Copy a recipe to edit it (never overwrites an existing file)."""
    from llmctl.config.load import resolve_recipe

    source = resolve_recipe(name)
    print(f"copied {source} -> {_copy_to(source, dest)}")


def _copy_to(source: Path, dest: str) -> Path:
    """Write `source` to `dest`: into it when it is a folder or ends in a separator (created if
    its parent exists, since `dir/` never means a file called `dir`), else as that file."""
    from llmctl.errors import UsageError

    target = Path(dest)
    if dest.endswith(tuple(filter(None, ("/", os.sep, os.altsep)))) and not target.is_dir():
        if not target.parent.is_dir():
            raise UsageError(f"Cannot create folder {dest}: {target.parent} does not exist.",
                             f"Create it first (mkdir -p {target}) or choose another destination.")
        try:
            target.mkdir()
        except OSError as exc:  # e.g. a file of that name
            raise UsageError(f"Cannot create folder {dest}: {exc.strerror}.", "Choose another destination.") from None
    if target.is_dir():
        target = target / source.name
    if not target.parent.is_dir():
        raise UsageError(f"Cannot copy to {target}: folder {target.parent} does not exist.",
                         f"Create it first (mkdir -p {target.parent}) or choose another destination.")
    try:
        with open(target, "xb") as handle:  # "x": an existing file is never overwritten, even in a race
            handle.write(source.read_bytes())
    except FileExistsError:
        raise UsageError(f"{target} already exists.", "Choose another destination.") from None
    except OSError as exc:
        raise UsageError(f"Cannot write {target}: {exc.strerror}.", "Choose another destination.") from None
    return target
