"""Recipes: the typed schema (schema.py) and reading YAML + --set overrides (load.py)."""
