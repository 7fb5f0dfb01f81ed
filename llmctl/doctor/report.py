"""What the doctor found: findings with a severity, per-split figures, and the exit code they imply.

Severities (README "Checking data before training" lists every check):
- error: data that will fail training or silently mislead it (validation labels training never
  shows, answers not where answer_start says, a split the reader refuses);
- warning: data that trains but deserves a look (imbalance, duplicates, leakage, empty texts,
  truncation, repaired IOB tags).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from llmctl.data.sources import row_location
from llmctl.errors import EXIT_DATA, EXIT_OK

FIRST_LINES = 5  # line numbers a finding lists (its count says how many there are)


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    check: str
    split: str
    message: str
    count: int = 0
    lines: list[int] = field(default_factory=list)


@dataclass
class Report:
    task: str
    splits: dict = field(default_factory=dict)  # role -> figures (rows, labels, tokens, ...)
    findings: list[Finding] = field(default_factory=list)
    epoch: dict = field(default_factory=dict)  # steps one epoch takes, batch sizes, processes
    cache: str | None = None  # the training features' cache status (llmctl.data.prepare)
    model: dict | None = None  # a new model (model.config): parameters and the memory training needs

    def add(self, severity: str, check: str, split: str, message: str, count: int = 0, lines=()) -> None:
        self.findings.append(Finding(severity, check, split, message, int(count), [int(x) for x in lines][:FIRST_LINES]))

    def has(self, severity: str, split: str | None = None) -> bool:
        return any(f.severity == severity and (split is None or f.split == split) for f in self.findings)

    def exit_code(self, strict: bool = False) -> int:
        if self.has("error") or (strict and self.has("warning")):
            return EXIT_DATA
        return EXIT_OK

    def to_json(self) -> dict:
        return {"task": self.task, "splits": self.splits, "epoch": self.epoch, "cache": self.cache,
                "errors": sum(f.severity == "error" for f in self.findings),
                "warnings": sum(f.severity == "warning" for f in self.findings),
                "findings": [asdict(f) for f in self.findings]} | ({"model": self.model} if self.model else {})


_LINE = re.compile(r":(\d+)$")
_ROW = re.compile(r" row (\d+)$")


def line_of(where: str, index: int, header: bool = True) -> int:
    """The line a row is on, as the reader names it (csv/tsv count the header; jsonl one row a
    line); for sources without lines (a Hub split, a JSON list) the 1-based row number."""
    return location_line(row_location(where, index, header), index)


def location_line(location: str, index: int) -> int:
    """The line number in a reader's location string (`file.csv:12`, `file.jsonl:3 token 2`)."""
    location = re.sub(r" token \d+$", "", location)
    found = _LINE.search(location)
    if found:
        return int(found.group(1))
    found = _ROW.search(location)
    return int(found.group(1)) + 1 if found else index + 1


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def at_lines(lines, unit: str = "line") -> str:
    """' (first at lines 3, 7)'; `unit` names what the numbers count where a source has no lines
    (a JSON document's questions)."""
    shown = list(lines)[:FIRST_LINES]
    return f" (first at {unit}{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))})" if shown else ""
