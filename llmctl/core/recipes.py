"""The shipped recipes: list them with the command each one's first line gives, show one, copy
one to edit (`llmctl recipes ...`); no heavy imports."""

from __future__ import annotations

import os
import re
from pathlib import Path


def first_command(path: Path) -> str:
    """The `llmctl ...` command of a recipe's first comment lines ("" when it has none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# llmctl "):
            return line[2:]
    return ""


def list_shipped() -> list[dict]:
    """[{"name", "path", "command"}] of every shipped recipe."""
    from llmctl.config.load import list_recipes

    return [{"name": name, "path": str(path), "command": first_command(path)} for name, path in list_recipes().items()]


def show(name: str) -> dict:
    """{"name", "path", "text"} of a recipe named by short name or path."""
    from llmctl.config.load import resolve_recipe

    path = resolve_recipe(name)
    return {"name": name, "path": str(path), "text": path.read_text(encoding="utf-8")}


def copy(name: str, dest: str) -> dict:
    """Copy a recipe to `dest` (a file, or a folder); its first line's command then names the copy,
    so the line can be pasted as it is. {"source", "path", "command"}."""
    from llmctl.config.load import resolve_recipe

    source = resolve_recipe(name)
    target = _copy_to(source, dest)
    return {"source": str(source), "path": str(target), "command": first_command(target)}


_HEADER = re.compile(r"^(# llmctl finetune )(\S+)", flags=re.M)


def _retarget(text: str, target: Path) -> str:
    """The recipe text with its header command (`# llmctl finetune NAME ...`) naming `target`."""
    from shlex import quote

    return _HEADER.sub(lambda m: m.group(1) + quote(str(target)), text, count=1)


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
            handle.write(_retarget(source.read_text(encoding="utf-8"), target).encode("utf-8"))
    except FileExistsError:
        raise UsageError(f"{target} already exists.", "Choose another destination.") from None
    except OSError as exc:
        raise UsageError(f"Cannot write {target}: {exc.strerror}.", "Choose another destination.") from None
    return target
