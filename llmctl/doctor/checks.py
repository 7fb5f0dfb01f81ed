"""Checks every task family shares: token-length figures, duplicate rows, train/validation overlap,
label balance. Rows are compared by 64-bit hashes held in numpy arrays (16 bytes a row), never as
Python objects, so a million-row file costs a few megabytes here."""

from __future__ import annotations

import math

import numpy as np

from llmctl.doctor.report import Report, verb, at_lines, plural

IMBALANCE_RATIO = 5.0  # most / least frequent label above this: a warning
TRUNCATED_SHARE = 0.01  # more than 1% of examples cut at max_length: a warning
KEEP = 99  # the percentile of lengths a suggested max_length keeps


def hashes(keys) -> np.ndarray:
    """One uint64 per key string (pandas' vectorised hash: deterministic across runs)."""
    import pandas as pd

    return pd.util.hash_array(np.asarray(list(keys) if not isinstance(keys, np.ndarray) else keys, dtype=object))


def length_figures(lengths, max_length: int | None) -> dict:
    """Percentiles of untruncated token counts and what `max_length` cuts."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size == 0:
        return {}
    p50, p90, p99 = (int(math.ceil(v)) for v in np.percentile(lengths, [50, 90, KEEP]))
    figures = {"p50": p50, "p90": p90, "p99": p99, "max": int(lengths.max()), "mean": round(float(lengths.mean()), 1)}
    if max_length:
        cut = int((lengths > max_length).sum())
        figures |= {"max_length": max_length, "truncated": cut, "truncated_share": round(cut / lengths.size, 4),
                    f"max_length_for_{KEEP}": p99}
    return figures


def check_truncation(report: Report, role: str, figures: dict, lengths, line_numbers, what: str = "examples",
                     key: str = "data.max_length") -> None:
    if figures.get("truncated_share", 0) > TRUNCATED_SHARE:
        lines = [line_numbers(int(i)) for i in np.flatnonzero(np.asarray(lengths) > figures["max_length"])[:5]]
        report.add("warning", "truncation", role,
                   f"{plural(figures['truncated'], what[:-1], what)} ({figures['truncated_share']:.1%}) {verb(figures['truncated'], 'is', 'are')} longer than "
                   f"{key} {figures['max_length']} (cut there); {key} {figures[f'max_length_for_{KEEP}']} would keep "
                   f"{KEEP}% whole{at_lines(lines)}.", figures["truncated"], lines)


def check_duplicates(report: Report, role: str, row_hashes: np.ndarray, line_numbers, unit: str = "line") -> None:
    """Rows equal to an earlier row of the same split (each repeat counted once)."""
    if row_hashes.size == 0:
        return
    _, first = np.unique(row_hashes, return_index=True)
    repeat = np.ones(row_hashes.size, dtype=bool)
    repeat[first] = False
    rows = np.flatnonzero(repeat)
    if rows.size:
        lines = [line_numbers(int(i)) for i in rows[:5]]
        report.add("warning", "duplicates", role,
                   f"{plural(int(rows.size), 'row')} {verb(rows.size, 'repeats', 'repeat')} an earlier row exactly{at_lines(lines, unit)}.", rows.size, lines)


def check_conflicts(report: Report, role: str, text_hashes: np.ndarray, row_hashes: np.ndarray, line_numbers) -> None:
    """The same input with different labels: the model is taught both answers (often a labelling slip)."""
    if text_hashes.size == 0:
        return
    pairs = np.unique(np.stack([text_hashes, row_hashes], axis=1), axis=0)
    texts, labels_each = np.unique(pairs[:, 0], return_counts=True)
    rows = np.flatnonzero(np.isin(text_hashes, texts[labels_each > 1]))
    if rows.size:
        lines = [line_numbers(int(i)) for i in rows[:5]]
        report.add("warning", "conflicting_labels", role,
                   f"{plural(int(rows.size), 'row')} {verb(rows.size, 'shares', 'share')} its text with a row of "
                   f"another label{at_lines(lines)}.", rows.size, lines)


def check_leakage(report: Report, role: str, own: np.ndarray, train: np.ndarray, line_numbers, what: str = "texts",
                  unit: str = "line") -> None:
    """Rows of an evaluation split whose input also appears in training: their scores flatter the model."""
    if own.size == 0 or train.size == 0:
        return
    rows = np.flatnonzero(np.isin(own, train))
    if rows.size:
        lines = [line_numbers(int(i)) for i in rows[:5]]
        report.add("warning", "leakage", role,
                   f"{plural(int(rows.size), 'row')} of {role} ({rows.size / own.size:.1%}) {verb(rows.size, 'has', 'have')} {what} that also appear "
                   f"in train{at_lines(lines, unit)}.", rows.size, lines)


def check_empty(report: Report, role: str, count: int, lines: list[int], what: str = "text", unit: str = "line") -> None:
    if count:
        report.add("warning", "empty_text", role,
                   f"{plural(count, 'row')} {verb(count, 'has', 'have')} an empty or whitespace-only {what}"
                   f"{at_lines(lines, unit)}.", count, lines)


def label_figures(counts: dict) -> dict:
    """{label: count} sorted by count, and the most / least frequent ratio."""
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    ratio = max(ordered.values()) / min(ordered.values()) if ordered else 1.0
    return {"counts": ordered, "imbalance": round(ratio, 2)}


def check_imbalance(report: Report, role: str, figures: dict, what: str = "label") -> None:
    counts = figures["counts"]
    if len(counts) > 1 and figures["imbalance"] > IMBALANCE_RATIO:
        most, least = next(iter(counts)), list(counts)[-1]
        report.add("warning", "imbalance", role,
                   f"the most frequent {what} '{most}' ({counts[most]:,}) outnumbers the rarest '{least}' "
                   f"({counts[least]:,}) {figures['imbalance']:g} to 1.", counts[least])


def check_unseen(report: Report, role: str, unseen: dict, lines: list[int], what: str = "label") -> None:
    """`unseen`: {value: rows} of an evaluation split that training never shows."""
    if unseen:
        total = sum(unseen.values())
        names = ", ".join(f"'{k}' ({v:,})" for k, v in list(unseen.items())[:10])
        report.add("error", "unseen_labels", role,
                   f"{plural(total, 'row')} {verb(total, 'has', 'have')} a {what} training never shows: {names}{at_lines(lines)}; the model "
                   "cannot predict it.", total, lines)
