"""The Typer app every command registers on, and what wraps each command: one error line and its
exit code, SIGTERM as Ctrl-C, a closed stdout pipe. Command modules import this, never the
package (whose __init__ imports them), so llmctl/cli has no import circle."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback

import typer

from llmctl import faults
from llmctl.cli.help import Typer
from llmctl.errors import EXIT_PIPE_CLOSED, EXIT_RUNTIME, LlmctlError



def debug_enabled() -> bool:
    return os.environ.get("LLMCTL_DEBUG", "").lower() in ("1", "true", "yes")


def report_errors(command):
    """Turn LlmctlError into one line on stderr and its exit code; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            faults.hook("command", name=command.__name__.removesuffix("_command"))
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except LlmctlError as exc:
            if debug_enabled():
                traceback.print_exc()
            _print_error(str(exc))
            _json_error(kwargs, exc.message, exc.exit_code, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _print_error(f"interrupted by {_TERMINATED[0]}." if _TERMINATED else "interrupted.")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _stdout_gone()
            raise typer.Exit(EXIT_PIPE_CLOSED) from None
        except Exception as exc:  # a bug or an unexpected library failure
            if debug_enabled():
                traceback.print_exc()
            message = (f"{type(exc).__name__}: {exc}".splitlines()[0]
                       + " (unexpected; rerun with --debug for the traceback)")
            _print_error(message)
            _json_error(kwargs, message, EXIT_RUNTIME, None)
            raise typer.Exit(EXIT_RUNTIME) from None

    return wrapper


class CommandApp(Typer):
    """A Typer whose every command is wrapped in report_errors, so no command can forget the
    one-line error and its exit code."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda function: register(report_errors(function))


app = CommandApp(
    name="llmctl",
    help="Fine-tune, evaluate and run transformer models from recipes. Exit codes: 0 ok, 1 runtime failure, "
    "2 usage/recipe error, 3 data error, 4 quality gate failed, 5 model not found/loadable, 130 interrupted, "
    "141 stdout reader closed the pipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


_TERMINATED: list[str] = []  # "SIGTERM" once one arrived, for the message


def _sigterm(signum, frame) -> None:
    """SIGTERM does what Ctrl-C does at that moment: the KeyboardInterrupt every command turns
    into exit 130, or a command's own SIGINT handler (generate finishes the row it is printing).
    Python's default would end the process with 143 and no word. finetune installs its own
    handler for both while it trains (a checkpoint at the next step)."""
    _TERMINATED[:] = ["SIGTERM"]
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _stdout_gone() -> None:
    """The reader closed the pipe (`llmctl predict ... | head`): stop quietly, like `cat`.
    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _json_error(kwargs: dict, message: str, code: int, hint: str | None) -> None:
    """With --json, a failure is one JSON object on stdout too, so `llmctl ... --json | jq` always
    reads one: {"error": the message, "hint": what to do or null, "exit_code": N} (the line stays on stderr)."""
    from llmctl.console import json_printed, print_json

    if not kwargs.get("json_out") or json_printed():
        return

    try:
        print_json({"error": message, "hint": hint.strip() if hint else None, "exit_code": code})
    except BrokenPipeError:
        _stdout_gone()


def _print_error(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"error: {message}", file=sys.stderr, flush=True)


def _version(value: bool):
    if value:
        from llmctl import __version__

        print(f"llmctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (same as LLMCTL_DEBUG=1)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    if debug:
        os.environ["LLMCTL_DEBUG"] = "1"
