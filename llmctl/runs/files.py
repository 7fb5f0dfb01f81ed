"""The one reader of the files in a run directory, for every command that reads a run back
(runs list / show / compare, report, eval, predict, export, push, the model card).

A run directory is user-writable and gets copied, edited and shared, so what it holds is
untrusted input: each file is read only when it is a regular file inside the run (a symlink
to /dev/zero or to a token is never followed), under a size limit, YAML through the recipe
loader's alias-bomb guard, and checked for the shape llmctl wrote (metrics.json's
test_metrics a mapping, recipe.yaml's task a string, ...). Anything else is a BadRunFile:
one line naming the file, exit 2 in a command about that run, a skipped row in a list.
Imports no torch.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from llmctl.errors import UsageError

MAX_JSON_BYTES = 64 * 1024 * 1024  # diagnostics.json of a large NER run is a few MB
MAX_YAML_BYTES = 1024 * 1024  # a resolved recipe is a few KB
MAX_PICTURE_BYTES = 32 * 1024 * 1024  # curves.png is ~100 KB

# What each reader relies on: key -> the types it may hold (absent and null are always fine).
# Only what some command reads is checked, so a newer llmctl's extra keys still read.
OBJ, TEXT, NUM, STRINGS = (dict,), (str,), (int, float), (list, str)  # STRINGS: a list of strings
SHAPES = {
    "recipe.yaml": {"task": TEXT, "model": OBJ, "data": OBJ, "train": OBJ, "output_dir": TEXT, "zero_shot": OBJ,
                    "model.name_or_path": TEXT, "train.metric_for_best": TEXT, "train.greater_is_better": (bool,),
                    "data.dataset": TEXT, "data.config": TEXT, "data.train": TEXT, "data.validation": TEXT,
                    "data.test": TEXT},
    "metrics.json": {"metrics": OBJ, "test_metrics": OBJ, "train": OBJ, "best_step": NUM},
    "llmctl.json": {"task": TEXT, "data": OBJ, "saved_at": OBJ, "precision": TEXT, "peft": OBJ,
                    "data.train": TEXT, "data.validation": TEXT, "data.test": TEXT},
    "environment.json": {"packages": OBJ, "argv": STRINGS, "python": TEXT, "git_sha": TEXT, "platform": TEXT},
    "loop.json": {"fingerprint": OBJ},
}
# The files `check_run` validates up front (path inside the run -> shape name).
RUN_FILES = {"recipe.yaml": "recipe.yaml", "environment.json": "environment.json", "metrics.json": "metrics.json",
             "model/llmctl.json": "llmctl.json"}


class BadRunFile(UsageError):
    """A run file llmctl cannot trust as it is; the message names the file."""


def regular_file(path: Path, root: Path | None = None) -> bool:
    """`path` is a regular file (not a symlink, fifo or device) and, with `root`, lies inside it."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    if root is None:
        return True
    inside = Path(path).resolve()
    return inside == Path(root).resolve() or Path(root).resolve() in inside.parents


def read_bytes(path: Path, limit: int, root: Path | None = None) -> bytes | None:
    """The file's bytes, None when there is no such file; BadRunFile for a link, a device or a
    folder where a file belongs, one larger than `limit`, or one outside `root`."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadRunFile(f"{path}: cannot be read ({exc.strerror}).") from None
    if stat.S_ISLNK(info.st_mode):
        raise BadRunFile(f"{path} is a symbolic link; llmctl reads only regular files inside a run.",
                         "Replace it with the file itself.")
    if not stat.S_ISREG(info.st_mode):
        raise BadRunFile(f"{path} is not a regular file.", "Remove it or replace it with the file llmctl wrote.")
    if root is not None and not regular_file(path, root):
        raise BadRunFile(f"{path} lies outside the run directory {root}.", "Copy the run as plain files.")
    if info.st_size > limit:
        raise BadRunFile(f"{path} is {info.st_size:,} bytes, more than the {limit:,} llmctl reads from a run file.",
                         "Remove it or replace it with the file llmctl wrote.")
    try:
        with open(path, "rb", opener=_no_follow) as handle:
            return handle.read(limit + 1)[:limit]
    except OSError as exc:
        raise BadRunFile(f"{path}: cannot be read ({exc.strerror}).") from None


def read_json(path: Path, shape: str | None = None, root: Path | None = None) -> dict | None:
    """A JSON object from a run, None when the file is absent; `shape` names an entry of SHAPES."""
    raw = read_bytes(path, MAX_JSON_BYTES, root)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRunFile(f"{path} is not valid JSON ({str(exc).splitlines()[0]}).",
                         "Restore the file llmctl wrote, or remove the run.") from None
    return _checked(path, value, shape or Path(path).name)


def read_yaml(path: Path, shape: str | None = None, root: Path | None = None) -> dict | None:
    """A YAML mapping from a run through the recipe loader's alias-bomb guard; None when absent."""
    import yaml

    from llmctl.config.load import AliasBomb, safe_yaml

    raw = read_bytes(path, MAX_YAML_BYTES, root)
    if raw is None:
        return None
    try:
        value = safe_yaml(raw.decode("utf-8"))[0]
    except AliasBomb as exc:
        raise BadRunFile(f"{path}: refusing this YAML: {exc} (a 'billion laughs' file?).",
                         "Restore the recipe llmctl wrote, or remove the run.") from None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise BadRunFile(f"{path} is not valid YAML ({problem}).",
                         "Restore the recipe llmctl wrote, or remove the run.") from None
    return _checked(path, {} if value is None else value, shape or Path(path).name)


def read_text(path: Path, limit: int = MAX_YAML_BYTES, root: Path | None = None) -> str | None:
    raw = read_bytes(path, limit, root)
    return None if raw is None else raw.decode("utf-8", errors="replace")


def check_run(path: str | Path) -> None:
    """Validate every file llmctl reads back from a run directory (a model folder alone: its
    llmctl.json), before a command does any work on it; BadRunFile names the first bad one."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return
    root = path if _looks_like_run(path) else None
    if root is None:
        read_json(path / "llmctl.json", "llmctl.json", path)
        return
    for name, shape in RUN_FILES.items():
        reader = read_yaml if name.endswith(".yaml") else read_json
        reader(root / name, shape, root)


def _looks_like_run(path: Path) -> bool:
    return any(os.path.lexists(path / name) for name in ("recipe.yaml", "environment.json", "metrics.json"))


def _checked(path: Path, value, shape: str):
    if not isinstance(value, dict):
        raise BadRunFile(f"{path} holds {_kind(value)}, not the mapping llmctl writes there.",
                         "Restore the file llmctl wrote, or remove the run.")
    for key, types in SHAPES.get(shape, {}).items():
        section, _, inner = key.partition(".")
        holder = value.get(section) if inner else value
        if not isinstance(holder, dict):
            continue  # the section's own entry reports it
        found = holder.get(inner or key)
        if found is not None and not _fits(found, types):
            raise BadRunFile(f"{path}: {key} is {_kind(found)}, where llmctl writes {_describe(types)}.",
                             "Restore the file llmctl wrote, or remove the run.")
    return value


def _fits(value, types: tuple) -> bool:
    if types == STRINGS:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, types) and not (types == NUM and isinstance(value, bool))


def _kind(value) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), f"a {type(value).__name__}")


def _describe(types: tuple) -> str:
    return {OBJ: "a mapping", TEXT: "a string", NUM: "a number", STRINGS: "a list of strings", (bool,): "true or false"}[types]


def _no_follow(path, flags):
    # O_NOFOLLOW closes the gap between the lstat above and the open (a file swapped for a link).
    return os.open(path, flags | os.O_NOFOLLOW)
