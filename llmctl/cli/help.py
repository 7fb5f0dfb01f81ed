"""--help that reads the way people type: `llmctl finetune [OPTIONS] RECIPE` and
`--set KEY=VALUE`, where typer 0.29 prints `{recipe}`, `recipe <str>` and `--set <list[str]>`.

Every Typer made with `Typer` below builds its commands with `Command`, so a new command gets
this without doing anything; an option without a metavar shows its name in capitals
(`--batch-size BATCH_SIZE`), as click does, rather than its Python type.
"""

from __future__ import annotations

import typer
from typer.core import TyperCommand


def argument_name(param) -> str:
    return param.metavar or param.name.upper()


def is_argument(param) -> bool:
    # typer 0.29 carries its own copy of click, so its classes are not `click.Argument`.
    return param.param_type_name == "argument"


class Command(TyperCommand):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "option" and not param.is_flag and param.metavar is None:
                param.metavar = param.name.strip("_").upper()

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not is_argument(param):
                pieces += param.get_usage_pieces(ctx)
            elif not param.hidden:
                name = argument_name(param)
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if is_argument(param):
                arguments.append((argument_name(param) + ("..." if param.nargs != 1 else ""), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class Typer(typer.Typer):
    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)
