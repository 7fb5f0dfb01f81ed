"""Question answering data: answers that are not where answer_start says, the unanswerable share,
empty questions or contexts, duplicate questions, train/validation overlap, token lengths of
question + context, and the windows each question becomes (a context longer than max_length is
split with doc_stride, never cut)."""

from __future__ import annotations

import numbers

import numpy as np

from llmctl.doctor import checks
from llmctl.doctor.report import verb, at_lines, line_of, plural
from llmctl.data.sources import data_format, looks_like_file
from llmctl.tasks.qa_data import is_missing, skips_unanswerable, used_rows

TOKENIZE_ROWS = 1_000


def _start(value):
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not is_missing(value) \
            and float(value) == int(value):
        return int(value)
    return None


def _windows(features) -> dict:
    per_question = np.bincount(np.asarray(features.meta["example"], dtype=np.int64))
    return {"windows": int(per_question.sum()), "windows_per_question": round(float(per_question.mean()), 3),
            "max_windows_per_question": int(per_question.max())}


def check(report, ctx) -> None:
    cfg, tokenizer = ctx.task.data_cfg, ctx.tokenizer
    train = {}

    def one(role: str, spec: str):
        rows, where = used_rows(spec, f"data.{role}", cfg, ctx.task.row_limit(role))
        line = lambda i: line_of(where, i)  # noqa: E731
        unit = "line" if _has_lines(spec, cfg, f"data.{role}") else "question"  # a JSON document has no lines
        empty, misplaced, movable, unanswerable = [], [], [], []
        for i, row in enumerate(rows):
            question, context = row["question"], row["context"]
            if is_missing(question) or not str(question).strip() or is_missing(context) or not str(context).strip():
                empty.append(i)
                continue
            context = str(context)
            if row["answers"] is not None and not row["answers"]:
                unanswerable.append(i)
            for answer in row["answers"] or []:
                text, start = str(answer.get("text")), _start(answer.get("answer_start"))
                if start is None or context[start:start + len(text)] != text:
                    (movable if cfg.realign_answers and text in context else misplaced).append(i)
        questions = ["" if is_missing(r["question"]) else str(r["question"]).lstrip() for r in rows]
        contexts = ["" if is_missing(r["context"]) else str(r["context"]) for r in rows]
        lengths = []
        for lo in range(0, len(rows), TOKENIZE_ROWS):
            enc = tokenizer(questions[lo:lo + TOKENIZE_ROWS], contexts[lo:lo + TOKENIZE_ROWS], truncation=False)
            lengths.extend(len(ids) for ids in enc["input_ids"])
        lengths = np.asarray(lengths, dtype=np.int64)
        skipped = len(unanswerable) if skips_unanswerable(cfg) else 0
        figures = {"rows": len(rows) - skipped, "rows_read": len(rows), "unanswerable": len(unanswerable),
                   "unanswerable_share": round(len(unanswerable) / max(1, len(rows)), 4),
                   "tokens": checks.length_figures(lengths, None)
                   | {"max_length": cfg.max_length, "doc_stride": cfg.doc_stride,
                      "split_into_windows": int((lengths > cfg.max_length).sum())}}
        features = ctx.train_features if role == "train" else None
        if features is None and role in ctx.splits:
            features = ctx.task.featurize(ctx.splits[role], tokenizer)
        if features is not None:
            figures |= _windows(features)
        report.splits[role] = figures
        _answer_findings(report, role, misplaced, movable, line, unit)
        if unanswerable and not cfg.version_2_with_negative:
            lines = [line(i) for i in unanswerable[:5]]
            skipped = cfg.skip_unanswerable
            report.add("warning" if skipped else "error", "unanswerable", role,
                       f"{plural(len(unanswerable), 'question')} ({figures['unanswerable_share']:.1%}) {verb(len(unanswerable), 'has', 'have')} no answer"
                       f"{at_lines(lines, unit)} but data.version_2_with_negative is false; "
                       + ("they are skipped (data.skip_unanswerable)." if skipped else
                          "set it to true (SQuAD v2.0 data), or data.skip_unanswerable: true."),
                       len(unanswerable), lines)
        checks.check_empty(report, role, len(empty), [line(i) for i in empty[:5]], "question or context", unit)
        keys = [q + "\x1f" + c for q, c in zip(questions, contexts)]
        answers = [repr(sorted((str(a.get("text")), str(a.get("answer_start"))) for a in (r["answers"] or [])))
                   for r in rows]
        checks.check_duplicates(report, role, checks.hashes([k + "\x1e" + a for k, a in zip(keys, answers)]), line,
                                unit)
        if role == "train":
            train["hashes"] = checks.hashes(keys)
        else:
            checks.check_leakage(report, role, checks.hashes(keys), train.get("hashes", np.zeros(0, np.uint64)), line,
                                 "questions (with their context)", unit)

    for role, spec in ctx.specs.items():
        ctx.guard(report, role, lambda: one(role, spec))


def _has_lines(spec: str, cfg, key: str) -> bool:
    """Whether the split's rows are on lines of a file (jsonl, csv, tsv) rather than items of a JSON
    document or a Hub split, whose rows the doctor numbers as questions."""
    if cfg.dataset and not looks_like_file(spec):
        return False
    return data_format(spec, key) in ("jsonl", "csv", "tsv")


def _answer_findings(report, role: str, misplaced: list[int], movable: list[int], line, unit: str = "line") -> None:
    if misplaced:
        lines = [line(i) for i in misplaced[:5]]
        report.add("error", "answer_alignment", role,
                   f"{plural(len(misplaced), 'answer')} {verb(len(misplaced), 'is', 'are')} not at their answer_start in the context{at_lines(lines, unit)}; "
                   "the model would learn the wrong span. Fix answer_start, or set data.realign_answers: true "
                   "when the text does occur in the context.", len(misplaced), lines)
    if movable:
        lines = [line(i) for i in movable[:5]]
        report.add("warning", "answer_alignment", role,
                   f"{plural(len(movable), 'answer')} {verb(len(movable), 'is', 'are')} not at their answer_start{at_lines(lines, unit)}; "
                   "data.realign_answers moves them to the nearest occurrence of their text.", len(movable), lines)
