"""NER data: entity counts per type, IOB problems (an I- tag after O or after another type, which
llmctl reads as a new entity), entity types validation has that training never shows, duplicate
sentences, train/validation overlap, and sub-token lengths (a sentence longer than max_length is
split into windows, never cut).

The tags are read raw, through the task's own readers, because load_split repairs IOB problems
in place and would hide where they are."""

from __future__ import annotations

from collections import Counter

import numpy as np

from llmctl.doctor import checks
from llmctl.doctor.report import verb, at_lines, location_line, plural
from llmctl.tasks import ner_utils as nu

TOKENIZE_ROWS = 1_000


def _entities(sents: nu.Sentences) -> tuple[Counter, list[tuple[int, int]], dict]:
    """(entities per type, IOB problems as (sentence, token), first (sentence, token) of each type)."""
    kinds, problems, first = Counter(), [], {}
    for s, tags in enumerate(sents.tags):
        prev_prefix, prev_kind = "O", None
        for t, tag in enumerate(tags):
            prefix, kind = nu.split_tag(str(tag))
            if prefix == "I" and (prev_prefix == "O" or prev_kind != kind):
                problems.append((s, t))
            if kind and (prefix == "B" or (prefix == "I" and (prev_prefix == "O" or prev_kind != kind))):
                kinds[kind] += 1
                first.setdefault(kind, (s, t))
            prev_prefix, prev_kind = prefix, kind
    return kinds, problems, first


def _lengths(tokenizer, tokens: list[list[str]]) -> np.ndarray:
    out = []
    for lo in range(0, len(tokens), TOKENIZE_ROWS):
        enc = tokenizer(tokens[lo:lo + TOKENIZE_ROWS], is_split_into_words=True, truncation=False)
        out.extend(len(ids) for ids in enc["input_ids"])
    return np.asarray(out, dtype=np.int64)


def check(report, ctx) -> None:
    cfg = ctx.task.data_cfg
    train = {}

    def one(role: str, spec: str):
        sents, _ = ctx.task.read_sentences(role, spec)
        kinds, problems, first = _entities(sents)

        def line(s: int, t: int | None = None) -> int:
            return location_line(sents.locate(s, t), s)

        lengths = _lengths(ctx.tokenizer, sents.tokens)
        figures = {"rows": len(sents.tokens), "words": int(sum(len(t) for t in sents.tokens)),
                   "entities": checks.label_figures(dict(kinds)) if kinds else {"counts": {}, "imbalance": 1.0},
                   "tokens": checks.length_figures(lengths, None)
                   | {"max_length": cfg.max_length, "split_into_windows": int((lengths > cfg.max_length).sum())}}
        if role == "train" and ctx.train_features is not None:
            figures["windows"] = len(ctx.train_features)
        report.splits[role] = figures
        if problems:
            lines = [line(s, t) for s, t in problems[:5]]
            report.add("warning", "iob", role,
                       f"{plural(len(problems), 'I- tag')} {verb(len(problems), 'follows', 'follow')} O or another entity type{at_lines(lines)}; "
                       "llmctl reads each as the start of a new entity (B-).", len(problems), lines)
        if kinds:
            checks.check_imbalance(report, role, figures["entities"], "entity type")
        keys = ["\x1f".join(words) for words in sents.tokens]
        checks.check_duplicates(report, role, checks.hashes([k + "\x1e" + " ".join(map(str, tags))
                                                             for k, tags in zip(keys, sents.tags)]),
                                lambda i: line(i))
        if role == "train":
            train.update(hashes=checks.hashes(keys), kinds=set(kinds))
            return
        checks.check_leakage(report, role, checks.hashes(keys), train.get("hashes", np.zeros(0, np.uint64)),
                             lambda i: line(i), "sentences")
        unseen = {k: n for k, n in kinds.items() if "kinds" in train and k not in train["kinds"]}
        checks.check_unseen(report, role, unseen, sorted(line(*first[k]) for k in unseen)[:5], "entity type")

    for role, spec in ctx.specs.items():
        if role != "train" and "train" in ctx.refused:
            break
        ctx.guard(report, role, lambda: one(role, spec))
