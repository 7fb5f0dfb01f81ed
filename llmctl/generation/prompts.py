"""Read prompts: command-line arguments, `--file` or stdin.

Files: .txt (or no extension): one prompt per non-blank line; .jsonl / .json: one object per
line, {"prompt": "..."} or a conversation {"messages": [{"role", "content"}, ...]} (with
--chat); .csv / .tsv / .parquet: a `prompt` column. Any other extension is refused, so a
table is never read line by line with its header as the first prompt.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from llmctl.data.sources import read_stdin, read_text
from llmctl.errors import DataError, LlmctlError, UsageError

LINES, JSONL, TABLES = ("", ".txt", ".text"), (".jsonl", ".json"), (".csv", ".tsv", ".parquet")
ROLES = ("system", "user", "assistant")
FILE_TIP = ('Use .txt (one prompt per line), .jsonl ({"prompt": ...} or {"messages": [...]} per line), '
            "or .csv / .tsv / .parquet with a 'prompt' column.")


@dataclass
class Prompt:
    text: str  # for a conversation: its last user message (shown nowhere; `messages` is what is sent)
    where: str  # "argument 2", "prompts.txt:3", "<stdin>:1": named in errors
    messages: list[dict] | None = None

    def echo(self) -> dict:
        """The input as the output row repeats it."""
        return {"messages": self.messages} if self.messages is not None else {"prompt": self.text}


def read_prompts(arguments: list[str], file: str | None = None, stdin=None, column: str = "prompt") -> list[Prompt]:
    """Prompts from exactly one source; stdin is read only when neither arguments nor --file are given.
    `column` (--prompt-column) names the field of jsonl rows and the column of tables holding them."""
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
        return parse_prompts(read_stdin("prompts", stdin), "<stdin>", jsonl=None, column=column)
    path = Path(file).expanduser()
    suffix = path.suffix.lower()
    if suffix in TABLES:
        return table_prompts(path, column)
    if suffix not in LINES + JSONL:
        raise DataError(f"--file: cannot read {path}: unknown extension '{path.suffix}'.", FILE_TIP)
    text = read_text(path, "--file", missing_tip=FILE_TIP)
    return parse_prompts(text, str(path), jsonl=suffix in JSONL, column=column)


def table_prompts(path: Path, column: str = "prompt") -> list[Prompt]:
    """The `column` column of a csv / tsv / parquet file, each cell named by its file line."""
    import pandas as pd

    from llmctl.data.sources import read_table, row_location

    frame = read_table(path, "--file")
    columns = list(frame.columns)
    if column not in columns:
        raise DataError(f"--file: {path} has no '{column}' column; its columns are: {', '.join(columns) or '(none)'}.",
                        "Name the column of prompts with --prompt-column NAME (default 'prompt').")
    prompts = []
    for i, value in enumerate(frame[column].tolist()):
        where = row_location(str(path), i)
        text = value if isinstance(value, str) else "" if pd.isna(value) else str(value)
        if not text.strip():  # a missing (NA) cell and a blank one alike
            raise DataError(f"{where}: '{column}' is empty.", "Give some text to continue, or drop the row.")
        prompts.append(Prompt(text, where))
    if not prompts:
        raise DataError(f"{path} has no prompts (only a header).", "Add one row per prompt.")
    return prompts


def parse_prompts(text: str, where: str, jsonl: bool | None, column: str = "prompt") -> list[Prompt]:
    """One prompt per non-blank line; jsonl rows need `prompt` or `messages`. jsonl=None: guess from the text."""
    if jsonl is None:
        jsonl = text.lstrip().startswith("{")
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines separate nothing; skipping them keeps line numbers honest
        at = f"{where}:{number}"
        prompts.append(_jsonl_prompt(line, at, column) if jsonl else Prompt(line, at))
    if not prompts:
        raise DataError(f"{where} has no prompts (it is empty or blank).",
                        "Put one prompt per line (txt) or one {\"prompt\": ...} object per line (jsonl).")
    return prompts


def _jsonl_prompt(line: str, at: str, column: str = "prompt") -> Prompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{at}:{exc.colno}: invalid JSON: {exc.msg}.") from exc
    if not isinstance(row, dict) or (column in row) == ("messages" in row):
        fields = ", ".join(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(f"{at}: give exactly one of '{column}' or 'messages' (found: {fields or 'nothing'}).",
                        f'Each jsonl line needs {{"{column}": "..."}} or {{"messages": [{{"role": "user", '
                        '"content": "..."}]}, or name the field with --prompt-column.')
    if "messages" in row:
        messages = check_messages(row["messages"], at)
        return Prompt(messages[-1]["content"], at, messages)
    if not isinstance(row[column], str) or not row[column].strip():
        raise DataError(f"{at}: '{column}' is empty or not a string.", "Give some text to continue.")
    return Prompt(row[column], at)


def check_messages(messages, at: str) -> list[dict]:
    """A conversation the chat template can end with the assistant's turn: role + content each,
    a system message only first, and the last message the user's (the one answered)."""
    shape = 'Give "messages" as a list of {"role": "system" | "user" | "assistant", "content": "..."}.'
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{at}: 'messages' must be a non-empty list.", shape)
    for k, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(f"{at}: message {k} needs 'role' and 'content'.", shape)
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise DataError(f"{at}: message {k} has role {role!r}, not one of {', '.join(ROLES)}.", shape)
        if role == "system" and k > 1:
            raise DataError(f"{at}: message {k} is a system message; only the first message may be one.")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{at}: message {k} ('{role}') has empty or non-string content.", shape)
    if messages[-1]["role"] != "user":
        raise DataError(f"{at}: the last message is from '{messages[-1]['role']}'; it must be the user's "
                        "(the model writes the reply to it).")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def chat_prompt(tokenizer, prompt: Prompt, system: str | None) -> str:
    """The prompt as the tokenizer's chat template writes it, ending in the assistant's turn."""
    messages = prompt.messages or [{"role": "user", "content": prompt.text}]
    if system is not None:
        if messages[0]["role"] == "system":
            raise DataError(f"{prompt.where}: the conversation has its own system message and --system was given.",
                            "Drop one of the two.")
        messages = [{"role": "system", "content": system}] + messages
    from llmctl.models.chat_template import render
    try:
        return render(tokenizer, messages, add_generation_prompt=True)
    except LlmctlError:
        raise
    except Exception as exc:  # templates refuse with jinja's raise_exception, e.g. "System role not supported"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{prompt.where}: the chat template of '{tokenizer.name_or_path}' refused the messages: "
                        f"{first}.") from exc
