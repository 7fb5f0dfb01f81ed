"""Read a recipe: find the file, parse YAML, apply --set overrides, validate.

All problems are collected and raised once, each naming the key (and the line in
the file when it came from there), with a did-you-mean for unknown keys.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from llmctl.errors import RecipeError


def recipe_dirs() -> list[Path]:
    """Where short recipe names are looked up: $LLMCTL_RECIPES, then the recipes shipped inside the
    package (llmctl/recipes/, package data, so an installed wheel has them too)."""
    dirs = []
    if os.environ.get("LLMCTL_RECIPES"):
        dirs.append(Path(os.environ["LLMCTL_RECIPES"]))
    dirs.append(Path(__file__).resolve().parents[1] / "recipes")
    return [d for d in dirs if d.is_dir()]


def list_recipes() -> dict[str, Path]:
    """Short name (path under recipes/ without .yaml) -> file."""
    found: dict[str, Path] = {}
    for root in recipe_dirs():
        for path in sorted(root.rglob("*.yaml")):
            found.setdefault(path.relative_to(root).with_suffix("").as_posix(), path)
    return found


def resolve_recipe(name: str) -> Path:
    """A path to a YAML file, or a short name such as `sst2-bert` or `classification/sst2-bert`."""
    path = Path(name)
    if path.is_file():
        return path
    known = list_recipes()
    by_stem = {}
    for short, file in known.items():
        by_stem.setdefault(short.rsplit("/", 1)[-1], []).append(file)
    if name in known:
        return known[name]
    if len(by_stem.get(name, [])) == 1:
        return by_stem[name][0]
    close = difflib.get_close_matches(name, list(known) + list(by_stem), n=1)
    hint = f"Did you mean '{close[0]}'? " if close else ""
    raise RecipeError(f"Recipe '{name}' not found (no such file or shipped recipe).", f"{hint}Run `llmctl recipes list`.")


def _line_map(node, prefix=(), out=None) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            out[path] = key_node.start_mark.line + 1
            _line_map(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[prefix + (i,)] = item.start_mark.line + 1
            _line_map(item, prefix + (i,), out)
    return out


# A recipe is a few dozen values; these bounds leave room for large generated ones while a
# "billion laughs" file (aliases of aliases, each doubling the document) is refused at once.
MAX_ALIASES = 1_000
MAX_VALUES = 100_000


class AliasBomb(yaml.YAMLError):
    """A document whose aliases expand past MAX_ALIASES uses or MAX_VALUES values."""


class RecursiveAlias(AliasBomb):
    """An anchor whose value holds an alias of itself (`&a [*a]`): a value without end, on which
    every later walk (the line map, pydantic) recursed until Python gave up."""


class RecipeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts alias uses while composing, so an alias bomb is refused before
    anything walks the expanded document (PyYAML shares aliased nodes, but our line map, pydantic and
    every later dump expand them)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise AliasBomb(f"it uses more than {MAX_ALIASES:,} aliases")
        return super().compose_node(parent, index)


def expanded_size(node, memo: dict | None = None) -> int:
    """Values in the document once every alias is expanded, counted over the shared nodes (so in
    time linear in the file, not in the expansion). RecursiveAlias for a node inside itself."""
    memo = {} if memo is None else memo
    if id(node) in memo:
        if memo[id(node)] is None:  # still being counted: we are inside it
            raise RecursiveAlias(f"the anchored value at line {node.start_mark.line + 1} holds an alias of itself")
        return memo[id(node)]
    memo[id(node)] = None
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(expanded_size(k, memo) + expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def safe_yaml(text: str):
    """(value, composed node or None) of a YAML document; AliasBomb when it would expand without bound."""
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        if expanded_size(node) > MAX_VALUES:
            raise AliasBomb(f"its anchors and aliases expand to more than {MAX_VALUES:,} values")
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[dict, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"Cannot read recipe {path}: {exc.strerror}.") from exc
    try:
        raw, node = safe_yaml(text)
        lines = _line_map(node) if node is not None else {}
    except RecursiveAlias as exc:
        raise RecipeError(f"{path}: refusing this YAML: {exc}, a value without end.",
                          "Write the value out instead of the alias.") from None
    except AliasBomb as exc:
        raise RecipeError(f"{path}: refusing this YAML: {exc} (a 'billion laughs' file?).", "Write the values out, or use fewer nested aliases.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{where}: invalid YAML: {problem}.", "Fix the syntax at that position.") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of keys (task, model, data, train, output_dir).")
    return raw, lines


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.learning_rate=3e-5` -> (["train", "learning_rate"], 3e-05). Values are YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set '{item}' is not KEY=VALUE.", "Example: --set train.learning_rate=3e-5")
    try:
        parsed = safe_yaml(value)[0] if value.strip() else None
    except AliasBomb as exc:
        raise RecipeError(f"--set '{key.strip()}': refusing this YAML value: {exc}.") from None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


# Top-level keys that hold a mapping of keys; a scalar there would replace the whole section.
SECTIONS = ("model", "data", "train", "zero_shot")


def apply_overrides(raw: dict, overrides: list[str]) -> set[tuple]:
    """Apply --set items in place; returns the key paths they touched. A --set never silently
    replaces a value it descends through, nor a whole section with a scalar."""
    touched = set()
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:  # absent or null: start an empty section
                child = node[key] = {}
            elif not isinstance(child, dict):
                here = ".".join(keys[: depth + 1])
                raise RecipeError(f"--set {item}: {here} is {child!r}, which has no keys to set.",
                                  f"Use --set {here}=VALUE.")
            node = child
        last = keys[-1]
        section = isinstance(node.get(last), dict) or (len(keys) == 1 and last in SECTIONS)
        if section and value is not None and not isinstance(value, dict):
            raise RecipeError(f"--set {item}: {'.'.join(keys)} is a section of keys, not a single value.",
                              f"Set one key inside it: --set {'.'.join(keys)}.KEY=VALUE.")
        if len(keys) == 1 and last in SECTIONS and isinstance(value, dict) and isinstance(node.get(last), dict):
            # `--set train={epochs: 2}` sets those keys; replacing the section would silently drop
            # every other key the recipe gave it. A mapping-valued key (zero_shot.verbalizers) is
            # one value and is replaced whole.
            node[last].update(value)
            touched.update((last, key) for key in value)
        else:
            node[last] = value
            touched.add(tuple(keys))
    return touched


def _describe(err: dict, model_fields_at) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
    key = ".".join(str(p) for p in loc) or "(recipe)"
    if err["type"] == "extra_forbidden":
        choices = model_fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), choices, n=1)
        tip = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(choices)}"
        return f"{key}: unknown key{tip}"
    if err["type"] == "missing":
        return f"{key}: required key is missing"
    # Our own validators' messages read as sentences; pydantic's "Value error, " prefix adds nothing.
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:  # a cross-check: its message names the keys itself
        return msg
    got = err.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return f"{key}: {msg}{shown}"


def validate_recipe(raw: dict, sections: dict, source: str = "<recipe>", lines: dict | None = None,
                    overridden: set | None = None):
    """Validate a raw mapping against its task's schema; one RecipeError listing every problem.
    `sections` maps each task name to its `data:` section class: the tasks own their data keys and
    config sits below them, so the caller (llmctl.tasks.recipe) passes the registry in."""
    from pydantic import BaseModel, ValidationError

    from llmctl.config.schema import Recipe

    lines, overridden = lines or {}, overridden or set()
    task_name = raw.get("task")
    if task_name is not None and not isinstance(task_name, str):  # a list is unhashable: `in sections` would crash
        where = f"{source}:{lines[('task',)]}" if ("task",) in lines else source
        raise RecipeError(f"{where}: task: {task_name!r} is a {type(task_name).__name__}; a recipe trains one task, "
                          f"one of: {', '.join(sections)}.")
    if task_name not in sections:
        close = difflib.get_close_matches(str(task_name), list(sections), n=1)
        tip = f"did you mean '{close[0]}'? " if close else ""
        where = f"{source}:{lines[('task',)]}" if ("task",) in lines else source
        raise RecipeError(
            f"{where}: task: {task_name!r} is not a known task; {tip}choose one of: {', '.join(sections)}."
        )
    schema = Recipe[sections[task_name]]

    def fields_at(loc):
        model: type[BaseModel] = schema
        for part in loc:
            ann = model.model_fields[part].annotation if part in model.model_fields else None
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                return []
            model = ann
        return list(model.model_fields)

    try:
        recipe = schema.model_validate(raw)
        recipe._source = source
        return recipe
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            text = _describe(err, fields_at)
            if not loc:  # a cross-check names its key first (e.g. "train.eval_every needs ..."): point at it
                loc = tuple(text.split(" ", 1)[0].rstrip(",").split("."))
            if loc in overridden:
                problems.append((0, f"--set {text}"))
            else:
                line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
                problems.append((line or 0, f"{source}:{line}: {text}" if line else f"{source}: {text}"))
        # In the file's order (stable: problems without a line, --set ones first, keep pydantic's order).
        problems = [text for _, text in sorted(problems, key=lambda p: p[0])]
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise RecipeError(
            f"Recipe {source} has {count}:\n  " + "\n  ".join(problems),
            "\nFix the keys above (or override with --set KEY=VALUE); `llmctl recipes show NAME` shows a valid recipe.",
        ) from None


def load_recipe(name_or_path: str, sections: dict, overrides: list[str] | None = None):
    """Resolve, read, override and validate a recipe against `sections` (task -> data section).
    Returns a typed Recipe; llmctl.tasks.recipe.load_recipe passes the task registry."""
    path = resolve_recipe(name_or_path)
    raw, lines = read_yaml(path)
    touched = apply_overrides(raw, overrides or [])
    return validate_recipe(raw, sections, str(path), lines, touched)


def check_recipe_task(recipe, model_task: str, where: str) -> None:
    """`eval MODEL --recipe R`: R's data keys mean something only for the task MODEL was trained
    for (`where` names the model); another task's recipe would fail deep inside loading."""
    if recipe.task != model_task:
        raise RecipeError(
            f"--recipe {recipe._source} is for task '{recipe.task}' but model {where} was trained for "
            f"'{model_task}'.",
            f"Use a {model_task} recipe or drop --recipe.",
        )


def recipe_to_yaml(recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
