"""A causal-LM training file larger than one chunk, never whole in memory: checked once a chunk at
a time (columns, empty cells, data.skip_empty), then read again and tokenized a chunk at a time
into columnar features, packed into blocks (llmctl.data.packing) or one row per example.

A file that fits in one chunk is read whole by CausalLMTask.load_split, as before; both give the
same features. A file is chat when its first chunk has the messages column (data.messages_column);
its conversations are checked a chunk at a time too (llmctl.tasks.chat). csv / tsv / parquet
and .txt chunks come from llmctl.data.streams.iter_table, json-lines chunks (.jsonl, or a .json holding JSON
Lines; any of them compressed, or a glob / folder of them) from iter_jsonl; a .json list is read whole.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from llmctl.data.nested import nested_names, nested_value
from llmctl.data.sources import data_format, row_location
from llmctl.data.streams import iter_jsonl, iter_table
from llmctl.errors import DataError
from llmctl.tasks.base import Note

CHUNK_ROWS = 10_000  # rows read and tokenized at once: their token lists are the transient heap


@dataclass
class LMFileSplit:
    """A training file checked but not held: `featurize_file` reads it again in chunks."""

    where: str
    path: Path
    rows: int  # rows trained on (after data.skip_empty)
    has_header: bool = True
    role: str = "train"
    limit: int | None = None  # rows of the file read (Task.row_limit); featurize reads the same ones
    notes: tuple[Note, ...] = ()
    chat: bool = False  # rows are conversations in cfg.messages_column

    def __len__(self) -> int:
        return self.rows


def _columns(cfg, chat: bool = False) -> dict[str, str]:
    """Column -> recipe key, in the order the whole-file read checks them."""
    if chat:
        return {cfg.messages_column: "data.messages_column"}
    if cfg.completion_column is None:
        return {cfg.text_column: "data.text_column"}
    return {cfg.prompt_column: "data.prompt_column", cfg.completion_column: "data.completion_column"}


def _learned(cfg) -> str:
    return cfg.completion_column or cfg.text_column


def _as_text(value) -> str:
    """A cell as the whole-file read sees it: missing (None, NaN, pandas NA) is empty text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return ""
    return str(value)


def read_chunks(path: Path, key: str, cfg, limit: int | None, chat: bool = False):
    """(column names of the file so far, {column: texts}) per chunk of at most CHUNK_ROWS rows,
    from the first `limit` rows (all when None). Chat cells are left as they are (lists of dicts)."""
    wanted = list(_columns(cfg, chat))
    cell = (lambda v: v) if chat else _as_text
    if data_format(path, key) == "jsonl":
        names: dict[str, None] = {}  # first appearance order, as pandas orders the columns of a jsonl
        for rows in iter_jsonl(path, key, CHUNK_ROWS, limit):
            for row in rows:
                names.update(dict.fromkeys(row))
                names.update(dict.fromkeys(nested_names(row)))
            yield list(names), {c: [cell(nested_value(row, c)) for row in rows] for c in wanted}
        return
    names, frames = iter_table(path, key, wanted, cfg.column_names, CHUNK_ROWS, limit, cfg.text_split)
    for frame in frames:
        yield names, {c: [cell(v) for v in frame[c].tolist()] if c in frame.columns else [cell(None)] * len(frame)
                      for c in wanted}


def is_chat(path: Path, key: str, cfg, limit: int | None) -> bool:
    """Whether the first chunk has the messages column (a table's header names all its columns)."""
    if data_format(path, key) != "jsonl":
        return cfg.messages_column in iter_table(path, key, [], cfg.column_names, CHUNK_ROWS, limit, cfg.text_split)[0]
    first = next(iter_jsonl(path, key, CHUNK_ROWS, limit), [])
    return any(cfg.messages_column in row for row in first)


# Columns other tools' chat data uses for its conversations (ShareGPT: turns of {"from", "value"}).
CHAT_COLUMNS = ("conversations",)


def check_chat_format(names: list[str], cfg, where: str) -> None:
    """Chat data under another column than data.messages_column would be read as plain text and
    fail on data.text_column: name the column and the setting instead."""
    from llmctl.errors import DataError

    found = [c for c in CHAT_COLUMNS if c in names and c != cfg.messages_column]
    if found and cfg.messages_column not in names and _learned(cfg) not in names:
        raise DataError(f"{where}: column '{found[0]}' looks like ShareGPT-style chat data ({found[0]} of "
                        f"from/value turns), but data.messages_column is '{cfg.messages_column}', which the file "
                        "lacks, so its rows would be read as plain text.",
                        f"Set data.messages_column: {found[0]} (--set data.messages_column={found[0]}), or convert "
                        'the turns to {"role", "content"} messages in a messages column.')


def _check_columns(names: list[str], cfg, where: str, chat: bool = False) -> None:
    from llmctl.tasks.classification_data import missing_column

    if not chat:
        check_chat_format(names, cfg, where)
    for column, key in _columns(cfg, chat).items():
        if column not in names:
            raise missing_column(key, column, where, names)


def open_split(path: Path, key: str, cfg, limit: int | None) -> LMFileSplit | None:
    """The checked split of the first `limit` rows, or None when they fit in one chunk (the caller
    reads them whole). Errors are the whole-file read's, in its order: a missing column, then the
    first empty cell."""
    chat = is_chat(path, key, cfg, limit)
    chunks = read_chunks(path, key, cfg, limit, chat)
    first, second = next(chunks, None), next(chunks, None)
    if second is None:
        return None
    where, header = str(path), cfg.column_names is None
    if chat:
        return _open_chat(path, where, header, limit, cfg, itertools.chain([first, second], chunks))
    if data_format(path, key) != "jsonl":
        _check_columns(first[0], cfg, where)  # a table's header names every column: fail before reading on
    # An empty prompt is allowed (the completion is then plain text); empty learned text only with
    # skip_empty. The first empty row is reported after the pass: a jsonl's missing column comes first.
    learned, first_empty = _learned(cfg), None
    names, start, kept = [], 0, 0
    for names, texts in itertools.chain([first, second], chunks):
        nonempty = [bool(t.strip()) for t in texts[learned]]
        if first_empty is None and not cfg.skip_empty and not all(nonempty):
            first_empty = start + nonempty.index(False)
        kept += sum(nonempty)
        start += len(nonempty)
    _check_columns(names, cfg, where)
    if first_empty is not None:
        raise DataError(f"{row_location(where, first_empty, header)}: column '{learned}' is empty.",
                        "Fill in or remove that row.")
    if not kept:
        raise DataError(f"{where}: every row is empty.", "Check data.text_column / data.completion_column.")
    notes = (Note(f"{where}: skipped {start - kept} empty row(s) (data.skip_empty)."),) if kept < start else ()
    return LMFileSplit(where=where, path=path, rows=kept, has_header=header, limit=limit, notes=notes)


def _open_chat(path: Path, where: str, header: bool, limit: int | None, cfg, chunks) -> LMFileSplit:
    """The checked chat split: every conversation well formed and ending with an assistant turn."""
    from llmctl.tasks.chat import conversation

    start, names = 0, []
    for names, cells in chunks:
        values = cells[cfg.messages_column]
        for i, value in enumerate(values, start):
            conversation(value, row_location(where, i, header), "assistant")
        start += len(values)
    _check_columns(names, cfg, where, chat=True)
    return LMFileSplit(where=where, path=path, rows=start, has_header=header, limit=limit, chat=True)


def featurize_file(split: LMFileSplit, cfg, examples, tokenizer, progress=None):
    """Columnar training features, a chunk at a time. `examples(columns, first_row)` gives the
    chunk's (input ids, labels) per example, as the whole-file featurize makes them; they are
    packed into cfg.max_length blocks (with where each block's examples start) when cfg.packing,
    else kept one row per example."""
    import numpy as np

    from llmctl.data.packing import blocks, example_starts
    from llmctl.data.store import Writer
    from llmctl.data.features import Features

    separate_labels = split.chat or cfg.completion_column is not None
    ids_out, labels_out = Writer(), Writer() if separate_labels else None
    learned, done = _learned(cfg), 0
    for _, texts in read_chunks(split.path, "data.train", cfg, split.limit, split.chat):
        keep = [i for i, t in enumerate(texts[learned]) if t.strip()] if cfg.skip_empty and not split.chat else None
        if keep is not None:
            texts = {c: [values[i] for i in keep] for c, values in texts.items()}
        ids, labels = examples(texts, done)
        ids_out.extend(ids)
        if separate_labels:
            labels_out.extend(labels)
        done += len(ids)
        del ids, labels, texts  # before the next chunk is read: one chunk's lists alive at a time
        if progress is not None:
            progress(done, split.rows)
    examples_ids = ids_out.finish()
    if cfg.packing:
        input_ids, starts = blocks(examples_ids, cfg.max_length), example_starts(examples_ids, cfg.max_length)
    else:
        input_ids, starts = examples_ids, None
    # Plain text learns every token: its labels are its input ids, the same array.
    if separate_labels:
        labels = labels_out.finish()
        labels = blocks(labels, cfg.max_length) if cfg.packing else labels
    else:
        labels = input_ids
    columns = {"input_ids": input_ids, "labels": labels} | ({"example_starts": starts} if starts is not None else {})
    return Features(columns=columns, lengths=input_ids.lengths().astype(np.int32), tokenizer=tokenizer)
