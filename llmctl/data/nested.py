"""Nested fields named with dots: `translation.en` is the "en" field of each row's "translation"
object (WMT), in json / jsonl / parquet rows and Hub data alike."""

from __future__ import annotations


def nested_value(row: dict, name: str):
    """row[name], or for a dotted name the field inside nested objects (None when absent)."""
    if name in row:
        return row[name]
    value = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def nested_names(row: dict) -> list[str]:
    """The dotted names of the fields inside a row's nested objects: {"a": {"b": {"c": 1}}} -> a.b, a.b.c."""
    names = []
    for name, value in row.items():
        if isinstance(value, dict):
            names += [f"{name}.{sub}" for sub in list(value) + nested_names(value)]
    return names


def add_nested_columns(frame):
    """Add a dotted column for every field inside object-valued cells (json / parquet structs),
    so `source_column: translation.en` names one; a row without the field gets None there."""
    for column in [c for c in frame.columns if frame[c].dtype == object]:
        values = frame[column].tolist()
        found: dict[str, None] = {}
        for value in values:
            if isinstance(value, dict):
                found.update(dict.fromkeys(list(value) + nested_names(value)))
        for name in found:
            full = f"{column}.{name}"
            if full not in frame.columns:
                frame[full] = [nested_value(v, name) if isinstance(v, dict) else None for v in values]
    return frame
