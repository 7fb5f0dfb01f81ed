"""Reading and checking SQuAD-style question answering data, before any model loads.

Accepted sources, one split each:

- the official SQuAD JSON (v1.1 or v2.0): {"version", "data": [{"title", "paragraphs":
  [{"context", "qas": [{"id", "question", "answers": [{"text", "answer_start"}],
  "is_impossible"}]}]}]};
- flat rows in jsonl / json (a list, or {"data": [...]}) / parquet with id, question,
  context and answers, where answers is {"text": [...], "answer_start": [...]} (the Hub
  layout) or [{"text", "answer_start"}, ...];
- a Hub split (rajpurkar/squad, rajpurkar/squad_v2), which has the flat layout.

Every answer must sit at its `answer_start` in the context; `realign_answers` moves a
wrong or missing start to the nearest occurrence of the text and counts the moves.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from llmctl.data.inputs import expand, file_format, is_multi
from llmctl.data.sources import (data_format, load_split, looks_like_file, read_table, read_text, refuse_plain_text,
                                 row_location)
from llmctl.errors import DataError
from llmctl.tasks.base import Note


@dataclass
class QASplit:
    """Validated examples of one split. `answers[i]` lists (text, answer_start) pairs; an
    empty list is an unanswerable (v2) question; `answers` is None for unlabelled input.
    `notes`: questions skipped and answers moved, for the caller to show (llmctl.tasks.base.Note)."""

    where: str
    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[tuple[str, int]]] | None
    role: str = "eval"
    notes: tuple = ()

    def __len__(self) -> int:
        return len(self.ids)


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_official(data) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("data"), list) and bool(data["data"])
            and isinstance(data["data"][0], dict) and "paragraphs" in data["data"][0])


def _official_rows(data: dict) -> list[dict]:
    rows = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                impossible = bool(qa.get("is_impossible", False))
                rows.append({"id": qa.get("id"), "question": qa.get("question"), "context": paragraph.get("context"),
                             "answers": [] if impossible else qa.get("answers", [])})
    return rows


def _flat_answers(value, where: str, qid: str, key: str) -> list[dict] | None:
    """Normalise one answers cell to [{"text", "answer_start"}]; None when absent."""
    if is_missing(value):
        return None
    if isinstance(value, dict):
        texts = list(value.get("text", []))
        starts = value.get("answer_start")
        starts = [None] * len(texts) if starts is None else list(starts)
        if len(starts) != len(texts):
            raise DataError(f"{where}: question {qid}: answers has {len(texts)} texts but {len(starts)} answer_start values.",
                            "Give one answer_start per answer text.")
        return [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value)
        if all(isinstance(a, dict) for a in items):
            return items
    raise DataError(f"{where}: question {qid}: {key} must be {{\"text\": [...], \"answer_start\": [...]}} "
                    f"or a list of {{\"text\", \"answer_start\"}} objects (got {type(value).__name__}).")


def read_rows(spec: str, key: str, cfg, limit: int | None = None) -> tuple[list[dict], str]:
    """The first `limit` (all when None) raw rows {id, question, context, answers} of a split and
    a name for messages. A glob or folder is its files in sorted order; each of its rows also
    carries "at", the file (and line) it came from, for messages."""
    if cfg.dataset and not looks_like_file(spec):
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, revision=cfg.revision)
        if limit is not None and len(ds) > limit:
            ds = ds.select(range(limit))
        return _rename(ds.to_list(), cfg, where), where
    path = Path(spec).expanduser()
    where = str(path)
    refuse_plain_text(spec, key, "qa", "a question, a context and answers")
    if not is_multi(spec):
        official = _official_file(path, key)
        if official is not None:
            return official[:limit], where
        frame = read_table(path, key)
        return _rename(frame.iloc[:limit].to_dict(orient="records"), cfg, where), where
    if data_format(spec, key) != "json":  # jsonl / csv / parquet files: one table, rows located in their files
        frame = read_table(path, key)
        return _rename(frame.iloc[:limit].to_dict(orient="records"), cfg, where,
                       at=lambda i: row_location(where, i)), where
    rows: list[dict] = []
    for file in expand(spec, key):  # JSON documents: each may be the official SQuAD layout
        if limit is not None and len(rows) >= limit:
            break
        official = _official_file(file, key)
        if official is None:
            official = _rename(read_table(file, key).to_dict(orient="records"), cfg, str(file), first=len(rows))
        rows.extend(row | {"at": str(file)} for row in official)
    return rows[:limit], where


def _official_file(path: Path, key: str) -> list[dict] | None:
    """The rows of an official SQuAD JSON file, or None when the file is something else."""
    if file_format(path) != "json" or not path.is_file() or data_format(path, key) != "json":  # JSON Lines
        return None
    text = read_text(path, key)  # decompressed, or a one-line error naming the file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{key}: {path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    return _official_rows(data) if _is_official(data) else None


def _rename(records: list[dict], cfg, where: str, first: int = 0, at=None) -> list[dict]:
    """Map the configured column names onto id / question / context / answers. A row without an id
    is numbered from `first`; `at(i)`: where row i came from, for a split of several files."""
    names = {"question": cfg.question_column, "context": cfg.context_column}
    columns = set(records[0]) if records else set()
    for role, column in names.items():
        if records and column not in columns:
            key = f"data.{role}_column"
            raise DataError(f"{key}: column '{column}' is not in {where}; its columns are: {', '.join(sorted(columns))}.",
                            f"Set {key}, or give the official SQuAD JSON layout.")
    rows = []
    for i, record in enumerate(records):
        qid = record.get(cfg.id_column)
        qid = str(first + i) if is_missing(qid) else qid
        row = {"id": qid, "question": record.get(cfg.question_column), "context": record.get(cfg.context_column),
               "answers": _flat_answers(record.get(cfg.answers_column), at(i) if at else where, str(qid),
                                        f"data.answers_column '{cfg.answers_column}'")}
        rows.append(row | {"at": at(i)} if at else row)
    return rows


def _one_error(problems: list[tuple[str, str]]) -> None:
    if problems:
        message, hint = problems[0]
        more = f" (and {len(problems) - 1} more like it)" if len(problems) > 1 else ""
        raise DataError(message + more, hint)


def _realign(context: str, text: str, start) -> int | None:
    """The occurrence of `text` in `context` nearest to `start` (the first when start is None)."""
    found, at = [], context.find(text)
    while at >= 0:
        found.append(at)
        at = context.find(text, at + 1)
    if not found:
        return None
    return found[0] if not isinstance(start, int) else min(found, key=lambda s: (abs(s - start), s))


def validate(rows: list[dict], where: str, key: str, cfg, role: str, labelled: bool) -> QASplit:
    """Check every row; raise one DataError naming the first bad question (and how many more)."""
    if not rows:
        raise DataError(f"{key}: {where} has no questions.", "Give a split with at least one question.")
    ids, questions, contexts, answers = [], [], [], []
    seen: set[str] = set()
    problems: list[tuple[str, str]] = []
    unanswerable, realigned = 0, 0
    for row in rows:
        qid = str(row["id"])
        loc = f"{row.get('at', where)}: question {qid}"
        if qid in seen:
            problems.append((f"{loc}: the id appears twice.", "Give every question a unique id."))
        seen.add(qid)
        question, context = row["question"], row["context"]
        if is_missing(question) or not str(question).strip():
            problems.append((f"{loc}: the question is empty.", "Fill in or remove that question."))
        if is_missing(context) or not str(context).strip():
            problems.append((f"{loc}: the context is empty.", "Give the passage the answer is taken from."))
            context = ""
        context = str(context)
        gold = []
        if labelled and context:  # (an empty context is reported once, not per answer)
            if row["answers"] is None:
                problems.append((f"{loc}: no answers (column data.answers_column '{cfg.answers_column}').",
                                 "Label every question; an unanswerable v2 question has an empty answers list."))
            for answer in row["answers"] or []:
                text, start = answer.get("text"), answer.get("answer_start")
                if is_missing(text) or not str(text).strip():
                    problems.append((f"{loc}: an answer text is empty.", "Fix or remove that answer."))
                    continue
                text = str(text)
                if isinstance(start, numbers.Real) and not isinstance(start, bool) and not is_missing(start) \
                        and float(start) == int(start):
                    start = int(start)  # also numpy integers (parquet) and 12.0 (pandas)
                ok = isinstance(start, int) and context[start:start + len(text)] == text
                if not ok and cfg.realign_answers and context:
                    moved = _realign(context, text, start)
                    if moved is None:
                        problems.append((f"{loc}: answer {text!r} does not occur in its context.",
                                         "Fix the answer text or the context."))
                        continue
                    start, ok = moved, True
                    realigned += 1
                if not ok:
                    if is_missing(start):
                        problems.append((f"{loc}: answer {text!r} has no answer_start.",
                                         "Give the character offset of the answer in the context, or set "
                                         "data.realign_answers: true to search the context for it."))
                    elif not isinstance(start, int):
                        problems.append((f"{loc}: answer_start {start!r} is not a character offset.",
                                         "Give an integer offset into the context."))
                    else:
                        problems.append((f"{loc}: answer {text!r} is not at answer_start {start} "
                                         f"(the context has {context[start:start + len(text)]!r} there).",
                                         "Fix answer_start, or set data.realign_answers: true to move it to "
                                         "the nearest occurrence of the text."))
                    continue
                gold.append((text, start))
            if not row["answers"] and not cfg.version_2_with_negative:
                unanswerable += 1
                if cfg.skip_unanswerable:
                    continue
        ids.append(qid)
        questions.append("" if is_missing(question) else str(question))
        contexts.append(context)
        answers.append(gold)
    _one_error(problems)
    if unanswerable and not cfg.skip_unanswerable:
        raise DataError(
            f"{key}: {where} has {unanswerable} unanswerable questions (is_impossible / empty answers: SQuAD v2.0 "
            "data), but data.version_2_with_negative is false.",
            "Set data.version_2_with_negative: true, or data.skip_unanswerable: true to use only the answerable ones.",
        )
    notes = []
    if unanswerable:
        notes.append(Note(f"{key}: skipped {unanswerable} unanswerable questions of {where} (data.skip_unanswerable).",
                          warning=True))
    if realigned:
        notes.append(Note(f"{key}: moved answer_start of {realigned} answers in {where} to where their text occurs "
                          "(data.realign_answers).", warning=True))
    if not ids:
        raise DataError(f"{key}: no questions left in {where}.", "Give a split with at least one usable question.")
    return QASplit(where, ids, questions, contexts, answers if labelled else None, role, tuple(notes))


def skips_unanswerable(cfg, labelled: bool = True) -> bool:
    """Whether unanswerable questions are dropped from the split (data.skip_unanswerable on SQuAD v1 data)."""
    return labelled and cfg.skip_unanswerable and not cfg.version_2_with_negative


def used_rows(spec: str, key: str, cfg, limit: int | None, labelled: bool = True) -> tuple[list[dict], str]:
    """The raw rows a split uses: the first `limit` (Task.row_limit) questions, counting only the
    answerable ones when unanswerable questions are skipped, so max_train_samples: 200 trains on
    200 questions; the skipped ones met on the way are kept for validate to count. The doctor
    reads the same rows."""
    if limit is None or not skips_unanswerable(cfg, labelled):
        return read_rows(spec, key, cfg, limit)
    rows, where = read_rows(spec, key, cfg, None)
    kept, answerable = [], 0
    for row in rows:
        if answerable == limit:
            break
        kept.append(row)
        answerable += row["answers"] is None or bool(row["answers"])
    return kept, where


def load_qa_split(spec: str, key: str, cfg, role: str, limit: int | None, labelled: bool = True) -> QASplit:
    """The first `limit` questions of a split (Task.row_limit), read and checked; the rest are never checked."""
    rows, where = used_rows(spec, key, cfg, limit, labelled)
    return validate(rows, where, key, cfg, role, labelled)


def predict_rows(rows: list[dict], where: str, cfg) -> QASplit:
    """User rows {question, context} (configured column names also work) -> an unlabelled split."""
    named = []
    for i, row in enumerate(rows):
        question = row.get(cfg.question_column, row.get("question"))
        context = row.get(cfg.context_column, row.get("context"))
        if question is None or context is None:
            raise DataError(f"{where} row {i + 1}: needs 'question' and 'context' fields; fields are: "
                            f"{', '.join(row) or '(none)'}.", "Give one {\"question\", \"context\"} object per line, "
                                                              "or use --question and --context.")
        for name, value in (("question", question), ("context", context)):
            if isinstance(value, (list, dict, bool)):
                raise DataError(f"{where} row {i + 1}: '{name}' is a JSON {type(value).__name__}, not text.",
                                f"Give '{name}' as a string.")
        qid = row.get(cfg.id_column, row.get("id"))
        named.append({"id": str(i) if qid is None else qid, "question": question, "context": context, "answers": None})
    return validate(named, where, "--input", cfg, "predict", labelled=False)
