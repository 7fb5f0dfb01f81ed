"""Read prompts: command-line arguments, `--file` (txt: one per line; jsonl: a `prompt` field) or stdin."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from llmctl.data.sources import read_text
from llmctl.errors import DataError, UsageError


@dataclass
class Prompt:
    text: str
    where: str  # "argument 2", "prompts.txt:3", "<stdin>:1": named in errors


def read_prompts(arguments: list[str], file: str | None = None, stdin=None) -> list[Prompt]:
    """Prompts from exactly one source; stdin is read only when neither arguments nor --file are given."""
    if arguments and file:
        raise UsageError("Give prompts as arguments or with --file, not both.")
    if arguments:
        prompts = [Prompt(text, f"argument {i}") for i, text in enumerate(arguments, start=1)]
        for prompt in prompts:
            if not prompt.text.strip():
                raise UsageError(f"Prompt {prompt.where} is empty.", "Give some text to continue.")
        return prompts
    if file is None or file == "-":
        stdin = stdin or sys.stdin
        if stdin.isatty():
            raise UsageError("No prompts.", "Pass PROMPT arguments, --file FILE, or pipe prompts into stdin.")
        return parse_prompts(stdin.read(), "<stdin>", jsonl=None)
    path = Path(file).expanduser()
    text = read_text(path, "--file", missing_tip="Give a .txt (one prompt per line) or .jsonl file.")
    return parse_prompts(text, str(path), jsonl=path.suffix.lower() in (".jsonl", ".json"))


def parse_prompts(text: str, where: str, jsonl: bool | None) -> list[Prompt]:
    """One prompt per non-blank line; jsonl rows need a string `prompt` field. jsonl=None: guess from the text."""
    if jsonl is None:
        jsonl = text.lstrip().startswith("{")
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines separate nothing; skipping them keeps line numbers honest
        if jsonl:
            prompts.append(Prompt(_jsonl_prompt(line, where, number), f"{where}:{number}"))
        else:
            prompts.append(Prompt(line, f"{where}:{number}"))
    if not prompts:
        raise DataError(f"{where} has no prompts (it is empty or blank).",
                        "Put one prompt per line (txt) or one {\"prompt\": ...} object per line (jsonl).")
    return prompts


def _jsonl_prompt(line: str, where: str, number: int) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}:{number}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if not isinstance(row, dict) or "prompt" not in row:
        fields = ", ".join(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(f"{where}:{number}: no 'prompt' field (found: {fields or 'nothing'}).",
                        'Each jsonl line needs {"prompt": "..."}.')
    if not isinstance(row["prompt"], str) or not row["prompt"].strip():
        raise DataError(f"{where}:{number}: 'prompt' is empty or not a string.", "Give some text to continue.")
    return row["prompt"]
