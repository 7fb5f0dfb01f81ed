"""`llmctl recipes list | show NAME | copy NAME DEST`: the shipped recipes (llmctl.core.recipes;
no heavy imports)."""

from __future__ import annotations

import typer

from llmctl.cli._app import CommandApp
from llmctl.cli._options import json_flag

recipes_app = CommandApp(help="List, show and copy the recipes that ship with llmctl.", no_args_is_help=True)


@recipes_app.command("list")
def list_(json_out: bool = json_flag('Print {"recipes": [{"name", "path", "command"}]}.')):
    """Short names of the shipped recipes and the command that runs each."""
    from llmctl.core.recipes import list_shipped

    from llmctl.console import print_result

    found = list_shipped()
    width = max((len(r["name"]) for r in found), default=0)
    print_result({"recipes": found}, json_out, (f"{recipe['name']:<{width}}  {recipe['command']}" for recipe in found))


@recipes_app.command("show")
def show(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`) or path."),
         json_out: bool = json_flag('Print {"name", "path", "text"}.')):
    """Print a recipe."""
    from llmctl.core.recipes import show as show_recipe

    from llmctl.console import print_result

    shown = show_recipe(name)
    print_result(shown, json_out, [shown["text"]])


@recipes_app.command("copy")
def copy(name: str = typer.Argument(..., metavar="NAME", help="Short name (see `llmctl recipes list`)."),
         dest: str = typer.Argument(..., metavar="DEST", help="File, or folder (a trailing / creates it)."),
         json_out: bool = json_flag('Print {"source", "path", "command"}.')):
    """Copy a recipe to edit it (never overwrites an existing file); its first line then runs the copy."""
    from llmctl.core.recipes import copy as copy_recipe

    from llmctl.console import print_result

    copied = copy_recipe(name, dest)
    print_result(copied, json_out, [f"copied {copied['source']} -> {copied['path']}"])
