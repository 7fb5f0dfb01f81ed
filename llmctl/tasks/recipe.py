"""A recipe read and checked against the task registry: the config layer parses and validates,
and each task owns its `data:` keys, so the binding of the two lives here, above both."""

from __future__ import annotations

from llmctl.config import load as _load


def data_sections() -> dict:
    """Task name -> the class of its recipe's `data:` section."""
    from llmctl.tasks import TASKS

    return {name: task.data_config for name, task in TASKS.items()}


def validate_recipe(raw: dict, source: str = "<recipe>", lines: dict | None = None, overridden: set | None = None):
    """Validate a raw mapping against its task's schema; one RecipeError listing every problem."""
    return _load.validate_recipe(raw, data_sections(), source, lines, overridden)


def load_recipe(name_or_path: str, overrides: list[str] | None = None):
    """Resolve, read, override and validate a recipe (a short name or a path). Returns a typed Recipe."""
    return _load.load_recipe(name_or_path, data_sections(), overrides)
