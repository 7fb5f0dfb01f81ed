"""Errors that reach the user, each tied to one documented exit code.

Commands raise these; `llmctl.cli` turns them into one line on stderr and the exit
code below, so CI scripts can tell a bad recipe from bad data from a failed gate.
A traceback is shown only with `--debug` or LLMCTL_DEBUG=1.
"""

from __future__ import annotations

# Documented in README.md ("Exit codes"); scripts depend on these numbers.
EXIT_OK = 0
EXIT_RUNTIME = 1  # training / evaluation failed while running
EXIT_USAGE = 2  # bad command line or recipe (same code Typer/Click use for usage errors)
EXIT_DATA = 3  # data missing, empty, wrong columns or labels
EXIT_GATE = 4  # `eval --fail-under` threshold not met
EXIT_MODEL = 5  # model or tokenizer cannot be found or loaded (incl. Hub unreachable)
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: state saved, resume with --resume
EXIT_PIPE_CLOSED = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE, as shell tools do


class LlmctlError(Exception):
    """An error with a message meant for the user and an exit code."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class RecipeError(LlmctlError):
    """The recipe (or a --set on it) is not one llmctl can run: every problem is listed at once."""

    exit_code = EXIT_USAGE


class UsageError(LlmctlError):
    """A command line that asks for something impossible: options that exclude each other, an
    unknown device, a path where a run is expected."""

    exit_code = EXIT_USAGE


class DataError(LlmctlError):
    """A data file or dataset that cannot be read as the task needs (named with its line or key)."""

    exit_code = EXIT_DATA


class ModelError(LlmctlError):
    """A checkpoint that cannot be found, trusted or loaded for this task."""

    exit_code = EXIT_MODEL


class GateFailed(LlmctlError):
    """A quality gate (--fail-under, --fail-over, --max-drop) that the scores did not pass: the
    command worked, the model did not."""

    exit_code = EXIT_GATE


class TrainingError(LlmctlError):
    """The work failed on its way, after the checks had passed: a NaN loss, a full disk."""

    exit_code = EXIT_RUNTIME


class Interrupted(LlmctlError):
    """SIGINT or SIGTERM: the run stopped at a step boundary and kept what a resume needs."""

    exit_code = EXIT_INTERRUPTED
