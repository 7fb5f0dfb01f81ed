"""NER data: the recipe's data keys, a split's validated sentences, and reading jsonl / Hub rows
into sentences with their shapes and tags checked (CoNLL reading, tag repair, windows and decoding
are in `ner_utils`). The task (`ner`) reads a split through these before any model loads.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import read_text
from llmctl.errors import DataError
from llmctl.tasks import ner_utils as nu
from llmctl.tasks.base import Note


class NerData(DataConfig):
    format: Literal["conll", "jsonl", "hub"] | None = Field(
        None, description="conll | jsonl | hub: how to read files. Default: from each file's extension "
                          "(.jsonl/.json: jsonl, other files: conll). A split name with data.dataset is always hub.")
    conll_tag_index: int = Field(-1, description="CoNLL field (0-based) that holds the tag; -1 = the last one.")
    tokens_column: str = Field("tokens", description="jsonl / hub: the column holding each sentence's words.")
    tags_column: str | None = Field(
        None, description="jsonl / hub: the column holding the tags (strings, or ids into the label names). "
                          "Default: ner_tags, or tags when there is no ner_tags column.")
    label_names: list[str] | None = Field(
        None, description="IOB2 tags in id order. Default: O, then B-/I- of every entity type in the training "
                          "data (or a Hub ClassLabel's names).")
    label_all_subtokens: bool = Field(
        False, description="Train on every sub-token of a word (B-X continues as I-X) instead of the first only.")
    window_overlap: int = Field(
        32, ge=0, description="Sub-tokens of context shared by consecutive windows of a sentence longer than "
                              "max_length (at most half a window).")
    constrained_decoding: bool = Field(
        True, description="Decode the most likely valid IOB2 sequence (I-X only inside an X entity) rather than "
                          "each word's most likely tag.")

    @field_validator("label_names")
    @classmethod
    def _iob2_names(cls, value):
        if value is not None:
            bad = [n for n in value if nu.split_tag(n)[0] not in ("O", "B", "I") or (n != "O" and not nu.split_tag(n)[1])]
            if bad:
                raise ValueError(f"not IOB2 tags (O, B-TYPE, I-TYPE): {', '.join(bad)}")
            if len(set(value)) != len(value):
                raise ValueError("label names repeat")
        return value


@dataclass
class NerSplit:
    """Validated sentences of one split; `texts`/`offsets` are set for raw-text prediction inputs."""

    where: str
    tokens: list[list[str]]
    tags: list[list[str]] | None  # IOB2 tag per word (I- without B- repaired); None when unlabelled
    texts: list[str | None] | None = None
    offsets: list[list[tuple[int, int]] | None] | None = None
    class_names: tuple[str, ...] | None = None  # a Hub ClassLabel's names (training data)
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)


def tags_column_of(cfg: NerData, columns) -> str:
    if cfg.tags_column:
        return cfg.tags_column
    return "tags" if "ner_tags" not in columns and "tags" in columns else "ner_tags"


def missing_column(key_name: str, column: str, where: str, columns) -> DataError:
    close = difflib.get_close_matches(column, list(columns), n=1)
    tip = f"Did you mean '{close[0]}'? " if close else ""
    return DataError(f"data.{key_name}: column '{column}' is not in {where}; its columns are: "
                     f"{', '.join(map(str, columns)) or '(none)'}.", f"{tip}Set data.{key_name} to one of them.")


def read_jsonl(cfg: NerData, label_names, path: Path, key: str, labelled: bool) -> nu.Sentences:
    text = read_text(path, key, encoding="utf-8-sig")
    records, lines = [], []
    if text.lstrip().startswith("["):  # one JSON list rather than JSON lines
        try:
            records, lines = json.loads(text), None
        except json.JSONDecodeError as exc:
            raise DataError(f"{key}: {path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{key}: {path}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
                lines.append(number)
    sents = nu.Sentences(where=str(path), row_lines=lines)
    if not records:
        raise DataError(f"{key}: {path} has no sentences.", "Give one JSON object per line with tokens and tags.")
    tags_column = tags_column_of(cfg, records[0] if isinstance(records[0], dict) else {})
    tokens, tags = [], []
    for r, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{key}: {sents.locate(r)}: expected a JSON object with '{cfg.tokens_column}'.")
        for column, name in ((cfg.tokens_column, "tokens_column"),) + (
                ((tags_column, "tags_column"),) if labelled else ()):
            if column not in record:
                raise missing_column(name, column, sents.locate(r), record)
        tokens.append(record[cfg.tokens_column])
        tags.append(record[tags_column] if labelled else None)
    return fill_sentences(cfg, label_names, sents, tokens, tags if labelled else None, key, None)


def read_dataset(cfg: NerData, label_names, spec: str, key: str, labelled: bool) -> tuple[nu.Sentences, list[str] | None]:
    from llmctl.data.sources import load_split

    ds, where = load_split(spec, key, cfg.dataset, cfg.config,
                           revision=cfg.revision)
    columns = list(ds.column_names)
    tags_column = tags_column_of(cfg, columns)
    for column, name in ((cfg.tokens_column, "tokens_column"),) + (
            ((tags_column, "tags_column"),) if labelled else ()):
        if column not in columns:
            raise missing_column(name, column, where, columns)
    names = None
    if labelled:
        feature = ds.features[tags_column]
        names = getattr(getattr(feature, "feature", None), "names", None)  # Sequence/List of ClassLabel
    sents = nu.Sentences(where=where)
    tags = ds[tags_column] if labelled else None
    return fill_sentences(cfg, label_names, sents, ds[cfg.tokens_column], tags, key, names), names


def fill_sentences(cfg: NerData, label_names, sents: nu.Sentences, tokens: list, tags: list | None, key: str,
                   names) -> nu.Sentences:
    """Check the shapes of jsonl / dataset rows and turn integer tags into names (a Hub
    ClassLabel's, else the task's)."""
    names = names or label_names
    tokens = list(tokens)  # a datasets Column re-creates its rows on every access
    tags = [list(r) if isinstance(r, (list, tuple)) else r for r in tags] if tags is not None else None
    for s, words in enumerate(tokens):
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise DataError(f"{key}: {sents.locate(s)}: '{cfg.tokens_column}' must be a list of "
                            f"non-empty strings, got {str(words)[:80]}.")
        if tags is None:
            continue
        row = tags[s]
        if not isinstance(row, list) or len(row) != len(words):
            got = f"{len(row)} tags" if isinstance(row, list) else f"{type(row).__name__}"
            raise DataError(f"{key}: {sents.locate(s)}: {len(words)} tokens but {got}.",
                            "Give one tag per token.")
        for t, tag in enumerate(row):
            if isinstance(tag, int) and not isinstance(tag, bool):
                if not names:
                    raise DataError(f"{key}: {sents.locate(s, t)}: tag {tag} is a number but no label names are "
                                    "known.", "List the tags in id order in data.label_names.")
                if not 0 <= tag < len(names):
                    raise DataError(f"{key}: {sents.locate(s, t)}: tag id {tag} is outside the {len(names)} "
                                    "label names.", "Fix the tag or data.label_names.")
                row[t] = names[tag]
            elif not isinstance(tag, str):
                raise DataError(f"{key}: {sents.locate(s, t)}: tag {tag!r} is neither a string nor an id.")
    sents.tokens = tokens
    sents.tags = tags if tags is not None else [None] * len(tokens)
    return sents


def check_tags(sents: nu.Sentences, names, key: str, why: str) -> None:
    known = set(names)
    for s, tags in enumerate(sents.tags):
        for t, tag in enumerate(tags):
            if tag not in known:
                shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
                raise DataError(f"{key}: {sents.locate(s, t)}: tag {tag!r} {why} ({shown}).",
                                "Fix the tag, or train with that entity type (or list it in data.label_names).")
