"""Multiple-choice data (SWAG / HellaSwag / ARC / PIQA shapes): the recipe keys, and reading a
split into contexts, endings and the index of the right ending, checked row by row before any
model loads.

Endings come from N columns (SWAG: ending0..ending3, PIQA: sol1, sol2) or from one column
holding a list (HellaSwag: endings) or a {text, label} mapping (ARC's hub `choices`). The
label is read as: the choice's own label when the column gives them (ARC's answerKey "A".."D",
or "1".."4" on the rows that use digits); else an integer or a digit string, counted from 0
(SWAG, HellaSwag); else one capital letter, A = the first ending; else the text of an ending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field, model_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import row_location
from llmctl.errors import DataError
from llmctl.tasks.base import Note

SWAG_ENDINGS = ["ending0", "ending1", "ending2", "ending3"]


class MultipleChoiceData(DataConfig):
    context_column: str = Field("sent1", description="Column holding the context (SWAG: sent1, ARC: question).")
    second_column: str | None = Field(
        None, description="Optional column holding the start of every ending (SWAG: sent2); it is put before each.")
    ending_columns: list[str] | None = Field(
        None, description="Columns holding one ending each; default ending0..ending3 (SWAG) unless choices_column is set.")
    choices_column: str | None = Field(
        None, description="One column holding every ending: a list of strings, or {text: [...], label: [...]} (ARC).")
    label_column: str = Field(
        "label", description="The right ending: an index from 0, a digit string, a letter (A = first), the choice's "
                             "own label, or the ending's text (ARC: answerKey).")

    @model_validator(mode="after")
    def _one_source_of_endings(self):
        if self.ending_columns is not None and self.choices_column is not None:
            raise ValueError("data.ending_columns and data.choices_column are alternatives: give one of them")
        if self.ending_columns is not None and len(self.ending_columns) < 2:
            raise ValueError("data.ending_columns needs at least two columns (one per ending)")
        return self

    def endings_from(self) -> list[str]:
        return [] if self.choices_column else (self.ending_columns or SWAG_ENDINGS)


@dataclass
class ChoiceSplit:
    where: str
    role: str  # train / validation / test / eval / predict: training features differ for generative models
    contexts: list[str]
    seconds: list[str] | None  # the start of every ending, per row
    endings: list[list[str]]  # the same number per row
    labels: list[int] | None  # index of the right ending; None when unlabelled
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.contexts)

    def choices(self, i: int) -> list[str]:
        """Row i's endings, each after the second sentence (run_swag's second segment for BERT)."""
        second = self.seconds[i].strip() if self.seconds else ""
        return [f"{second} {e}" if second else e for e in self.endings[i]]

    def prompt(self, i: int) -> str:
        """Context and second sentence: what a generative model reads before an ending (the
        harness's SWAG context is sent1 + sent2, its choices the endings alone)."""
        second = self.seconds[i].strip() if self.seconds else ""
        return f"{self.contexts[i].rstrip()} {second}" if second else self.contexts[i]


class Rows:
    """User input rows (dicts, from `llmctl predict`) through the few Dataset methods read_split uses."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.column_names = list(dict.fromkeys(k for row in rows for k in row))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list:
        return [row.get(column) for row in self.rows]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_split(ds, where: str, cfg: MultipleChoiceData, role: str, labelled: bool, header: bool) -> ChoiceSplit:
    from llmctl.tasks.classification_data import missing_column

    columns = list(ds.column_names)
    wanted = [("data.context_column", cfg.context_column)]
    wanted += [("data.second_column", cfg.second_column)] if cfg.second_column else []
    wanted += [("data.ending_columns", c) for c in cfg.endings_from()]
    wanted += [("data.choices_column", cfg.choices_column)] if cfg.choices_column else []
    wanted += [("data.label_column", cfg.label_column)] if labelled else []
    for key, column in wanted:
        if column not in columns:
            raise missing_column(key, column, where, columns)

    def at(i: int) -> str:
        return row_location(where, i, header)

    contexts = []
    for i, value in enumerate(ds[cfg.context_column]):
        if _missing(value) or not str(value).strip():
            raise DataError(f"{at(i)}: column '{cfg.context_column}' is empty.", "Fill in or remove that row.")
        contexts.append(str(value))
    seconds = ["" if _missing(v) else str(v) for v in ds[cfg.second_column]] if cfg.second_column else None
    endings, own_labels = _read_endings(ds, cfg, at)
    labels = None
    if labelled:
        labels = [gold_index(value, endings[i], own_labels[i], at(i), cfg.label_column)
                  for i, value in enumerate(ds[cfg.label_column])]
    return ChoiceSplit(where=where, role=role, contexts=contexts, seconds=seconds, endings=endings, labels=labels)


def _read_endings(ds, cfg: MultipleChoiceData, at) -> tuple[list[list[str]], list[list[str] | None]]:
    """Every row's endings, and the choices' own labels where the column gives them (ARC)."""
    if cfg.choices_column:
        endings, own = [], []
        for i, value in enumerate(ds[cfg.choices_column]):
            texts, labels = _choices_cell(value, cfg.choices_column, at(i))
            endings.append(texts)
            own.append(labels)
    else:
        cells = [ds[c] for c in cfg.endings_from()]
        endings = [list(row) for row in zip(*cells)]
        own = [None] * len(endings)
    for i, row in enumerate(endings):
        for j, text in enumerate(row):
            if _missing(text) or not str(text).strip():
                where = f"column '{cfg.endings_from()[j]}'" if not cfg.choices_column else \
                    f"ending {j} of column '{cfg.choices_column}'"
                raise DataError(f"{at(i)}: {where} is empty.", "Fill in or remove that row.")
            row[j] = str(text)
        if len(row) != len(endings[0]):
            raise DataError(f"{at(i)}: {len(row)} endings, but {at(0)} has {len(endings[0])}; every row needs "
                            "the same number of endings.", "Fix or remove that row (or split the data by count).")
    return endings, own


def _choices_cell(value, column: str, where: str) -> tuple[list, list[str] | None]:
    labels = None
    if isinstance(value, dict):  # ARC's hub shape: {"text": [...], "label": ["A", "B", ...]}
        labels = value.get("label")
        labels = [str(x).strip() for x in labels] if isinstance(labels, (list, tuple)) else None
        value = value.get("text")
    if hasattr(value, "tolist"):  # a numpy array from a parquet file
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise DataError(f"{where}: column '{column}' holds {value!r}, not a list of at least two endings.",
                        'Give a list of strings, e.g. ["ending one", "ending two"], or {"text": [...], "label": [...]}.')
    if labels is not None and len(labels) != len(value):
        labels = None
    return list(value), labels


def gold_index(value, endings: list[str], own_labels: list[str] | None, where: str, column: str) -> int:
    """The index of the right ending (module docstring: how each kind of label is read)."""
    n = len(endings)
    if _missing(value) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: the label ('{column}') is empty.", "Label every row, or remove it.")
    text = str(value).strip()
    index = None
    if own_labels is not None and text in own_labels:
        return own_labels.index(text)
    if isinstance(value, (int, float)) and float(value).is_integer():
        index = int(value)
    elif isinstance(value, str) and text.lstrip("-").isdigit():
        index = int(text)
    elif isinstance(value, str) and len(text) == 1 and "A" <= text <= "Z":
        index = ord(text) - ord("A")
    elif isinstance(value, str) and text in [e.strip() for e in endings]:
        return [e.strip() for e in endings].index(text)
    if index is None or not 0 <= index < n:
        letters = f", A to {chr(ord('A') + n - 1)}" if n <= 26 else ""
        known = f", or one of {', '.join(own_labels)}" if own_labels else ""
        raise DataError(f"{where}: label {value!r} ('{column}') is outside the {n} endings "
                        f"(0 to {n - 1}{letters}{known}, or an ending's text).",
                        "Fix the row, or remove unlabelled rows (SWAG's test split has label -1).")
    return index
