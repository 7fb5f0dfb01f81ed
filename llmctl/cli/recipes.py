"""`llmctl recipes list | show NAME | copy NAME DEST`: the shipped recipes (llmctl.core.recipes;
no heavy imports)."""

from __future__ import annotations

import typer

from llmctl.cli._app import report_errors
from llmctl.cli._options import json_flag
from llmctl.cli.help import Typer

recipes_app = Typer(help="List, show and copy the recipes that ship with llmctl.", no_args_is_help=True)


@recipes_app.command("list")
@report_errors
def list_(json_out: bool = json_flag('Print {"recipes": [{"name", "path", "command"}]}.')):
    """Short names of the shipped recipes and the command that runs each."""
    from llmctl.core.recipes import list_shipped

    found = list_shipped()
    if json_out:
        from llmctl.console import print_json

        print_json({"recipes": found})
        return
    width = max((len(r["name"]) for r in found), default=0)
    for recipe in found:
        print(f"{recipe['name']:<{width}}  {recipe['command']}")


@recipes_app.command("show")
@report_errors
def show(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`) or path."),
         json_out: bool = json_flag('Print {"name", "path", "text"}.')):
    """Print a recipe."""
    from llmctl.core.recipes import show as show_recipe

    shown = show_recipe(name)
    if json_out:
        from llmctl.console import print_json

        print_json(shown)
        return
    print(shown["text"], end="")


@recipes_app.command("copy")
@report_errors
def copy(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`)."),
         dest: str = typer.Argument(..., metavar="DEST", help="File, or folder (a trailing / creates it)."),
         json_out: bool = json_flag('Print {"source", "path", "command"}.')):
    """Copy a recipe to edit it (never overwrites an existing file); its first line then runs the copy."""
    from llmctl.core.recipes import copy as copy_recipe

    copied = copy_recipe(name, dest)
    if json_out:
        from llmctl.console import print_json

        print_json(copied)
        return
    print(f"copied {copied['source']} -> {copied['path']}")
