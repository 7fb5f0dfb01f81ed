"""Classification data: the recipe's data keys, a split's validated examples (whole, or a
training file kept on disk), and labels read from them: the label set a training split implies and
each row's label id or regression target, errors naming the row. Shared with the other tasks: the
"column is not in the file" error (missing_column).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import row_location
from llmctl.errors import DataError
from llmctl.tasks.base import Labels


class ClassificationData(DataConfig):
    text_columns: list[str] = Field(["sentence"], description="One column, or two for sentence pairs.")
    label_column: str = Field("label", description="Column holding the label (or the number for regression).")
    label_names: list[str] | None = Field(
        None, description="Label names in id order; integer labels index into it. Default: sorted labels of train."
    )
    regression: bool | None = Field(None, description="Predict a number (STS-B). Default: true for float labels.")

    @field_validator("text_columns")
    @classmethod
    def _one_or_two(cls, value):
        if not 1 <= len(value) <= 2:
            raise ValueError("give one text column, or two for sentence pairs")
        return value


@dataclass
class Split:
    """Validated raw examples of one split."""

    where: str
    texts: list[list[str]]  # one list per text column
    labels: list | None  # label values as read (names, ids or numbers); None when unlabelled
    has_header: bool = True
    class_names: tuple[str, ...] | None = None  # a Hub ClassLabel's names, which integer labels index
    notes = ()  # classification has nothing to tell beyond its errors

    def __len__(self) -> int:
        return len(self.texts[0])


@dataclass
class FileSplit:
    """A training file checked row by row but not held in memory: featurize reads it again in
    chunks (llmctl.data.streams.iter_table). Only the label values are kept."""

    where: str
    path: Path
    labels: list
    rows: int
    has_header: bool = True
    texts = None  # never materialised
    class_names = None
    notes = ()

    def __len__(self) -> int:
        return self.rows


def missing_column(key: str, column: str, where: str, columns: list[str]) -> DataError:
    close = difflib.get_close_matches(column, columns, n=1)
    tip = f"Did you mean '{close[0]}'? " if close else ""
    return DataError(
        f"{key}: column '{column}' is not in {where}; its columns are: {', '.join(columns)}.",
        f"{tip}Set {key} to one of them (or data.column_names for a file without a header).",
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def learn_labels(split: Split | FileSplit, cfg: ClassificationData) -> Labels:
    """The label set a training split implies: a Hub ClassLabel's names; regression when
    data.regression is unset and a label has a fraction; else the sorted labels present."""
    if split.class_names and not cfg.regression:
        return Labels(tuple(split.class_names))
    values = _distinct(split.labels)
    if cfg.regression is None and any(_is_number(v) and not _is_missing(v) and (math.isinf(v) or v != int(v))
                                      for v in values):
        return Labels(regression=True)
    try:
        return Labels(tuple(_fit_names(values, split.where, split.has_header)))
    except DataError:
        _fit_names(split.labels, split.where, split.has_header)  # the same error, naming the first bad row
        raise


def _distinct(values: list) -> list:
    """Each distinct label value once (1, 1.0 and True kept apart), or all of them when one is unhashable."""
    try:
        return list({(v.__class__, v): v for v in values}.values())
    except TypeError:
        return values


def encode_labels(values: list, labels: Labels, where: str, header: bool) -> list:
    """Label ids (int) or regression targets (float), one per value; a DataError names the first bad row."""
    if labels.regression:
        return [_target(v, where, i, header) for i, v in enumerate(values)]
    lookup = {name: i for i, name in enumerate(labels.names)}
    seen: dict = {}  # (type, value) -> id: a label column holds few distinct values (1 and True differ)
    ids = []
    for i, value in enumerate(values):
        try:
            ids.append(seen[value.__class__, value])
        except (KeyError, TypeError):  # new, or unhashable (a list in a json file)
            ids.append(_label_id(value, lookup, labels.names, where, i, header))
            if isinstance(value, (int, float, str)):
                seen[value.__class__, value] = ids[-1]
    return ids


def _fit_names(values, where, header) -> list[str]:
    present = []
    for i, value in enumerate(values):
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            raise DataError(f"{row_location(where, i, header)}: the label is empty.", "Label every training row.")
        present.append(value)
    if all(_is_number(v) for v in present):
        ints = sorted({int(v) for v in present})
        if ints and ints[0] < 0:
            raise DataError(f"{where}: label {ints[0]} is negative (unlabelled rows?).",
                            "Remove unlabelled rows from the training split.")
        return [str(i) for i in range(max(ints) + 1)] if ints[0] == 0 else [str(i) for i in ints]
    return sorted({str(v).strip() for v in present})


def _label_id(value, lookup: dict, names: tuple[str, ...], where: str, i: int, header: bool) -> int:
    if _is_missing(value) or (isinstance(value, str) and value == ""):
        raise DataError(f"{row_location(where, i, header)}: the label is empty.", "Label every row, or remove it.")
    if _is_number(value) and math.isfinite(value) and float(value) == int(value):
        as_name = str(int(value))
        if as_name in lookup:
            return lookup[as_name]
        if 0 <= int(value) < len(names) and not any(n.lstrip("-").isdigit() for n in names):
            return int(value)  # integer labels index into names from label_names / ClassLabel
    elif isinstance(value, str) and value.strip() in lookup:
        return lookup[value.strip()]
    shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    raise DataError(
        f"{row_location(where, i, header)}: label {value!r} is not one of the known labels ({shown}).",
        "Fix the row, or list every label in data.label_names.",
    )


def _target(value, where, i, header) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or math.isinf(number):
        raise DataError(
            f"{row_location(where, i, header)}: regression target {value!r} is not a number.",
            "Fix the row; regression labels must be numbers.",
        )
    return number
