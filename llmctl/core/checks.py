"""Command-line values checked before anything loads: one line, exit 2, naming the flag."""

from __future__ import annotations

import os
from pathlib import Path

from llmctl.errors import UsageError


def at_least_one(**values: int | None) -> None:
    """`batch_size=0` -> "--batch-size must be at least 1 (got 0)."; None means not given."""
    for name, value in values.items():
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1 (got {value}).", f"Pass a positive {flag}.")


def not_empty(**values: str | None) -> None:
    """`model=""` -> "--model is empty ..."; None means not given (an unset shell variable gives "")."""
    for name, value in values.items():
        if value is not None and not value.strip():
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is empty.", f"Give {flag} a value, or leave it out (an unset shell "
                                                  "variable expands to nothing).")


def writable_file(target: str, flag: str) -> None:
    """A file the command will write at the end: its folder must exist and be writable now,
    not after minutes of work."""
    path = Path(target).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {target} is a directory.", f"Give a file name, e.g. {flag} {path / 'out.jsonl'}.")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {target}: directory {folder} does not exist.",
                         f"Create it first (mkdir -p {folder}) or choose another path.")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {target}: directory {folder} is not writable.", "Choose another path.")
