"""Chat data in the shapes people have, converted on read to the messages column chat training
uses (lists of {"role", "content"}):

- ShareGPT: a `conversations` column of [{"from": "human" | "gpt" | "system" | ..., "value": ...}].
- Alpaca: `instruction`, optional `input` and `output` columns; the user turn is the instruction,
  then a blank line and the input when there is one, the assistant turn the output.

A file is read in the first shape its columns show: the messages column (data.messages_column),
then ShareGPT, then Alpaca (only when the recipe names no prompt/completion columns and the data
has no data.text_column). Messages that are not ShareGPT-shaped are passed on unchanged, so the
conversation check (tasks/chat.py) names what is wrong with them.
"""

from __future__ import annotations

SHAREGPT = "sharegpt"
ALPACA = "alpaca"
MESSAGES = "messages"
SHAREGPT_COLUMN = "conversations"
ALPACA_COLUMNS = ("instruction", "output")
# ShareGPT's "from" values -> chat roles (unknown ones stay as they are and are refused by name)
ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
           "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system",
           "tool": "tool", "function": "tool", "observation": "tool"}


def chat_format(names, cfg) -> str | None:
    """The chat shape of data with these column names: "messages", "sharegpt", "alpaca" or None."""
    names = set(names)
    if cfg.messages_column in names:
        return MESSAGES
    if SHAREGPT_COLUMN in names:
        return SHAREGPT
    if (cfg.completion_column is None and cfg.text_column not in names
            and all(c in names for c in ALPACA_COLUMNS)):
        return ALPACA
    return None


def source_columns(fmt: str, cfg) -> dict[str, str]:
    """Columns a format is read from -> what the recipe or the format calls them (for messages)."""
    if fmt == SHAREGPT:
        return {SHAREGPT_COLUMN: "ShareGPT's conversations column"}
    if fmt == ALPACA:
        return {"instruction": "Alpaca's instruction column", "output": "Alpaca's output column"}
    return {cfg.messages_column: "data.messages_column"}


def wanted_columns(fmt: str, cfg) -> list[str]:
    return list(source_columns(fmt, cfg)) + (["input"] if fmt == ALPACA else [])


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


def _sharegpt(value):
    if hasattr(value, "tolist"):  # a parquet list column comes back from pandas as a numpy array
        value = value.tolist()
    if not isinstance(value, list):
        return value
    return [{"role": ROLE_OF.get(m["from"], m["from"]), "content": m["value"]}
            if isinstance(m, dict) and "from" in m and "value" in m else m for m in value]


def _alpaca(instruction, extra, output) -> list[dict]:
    user = "" if _missing(instruction) else instruction
    if not _missing(extra) and str(extra).strip():
        user = f"{user}\n\n{extra}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": None if _missing(output) else output}]


def to_messages(fmt: str, cells: dict[str, list], cfg) -> list:
    """One messages value per row of `cells` ({column: values}) in format `fmt`."""
    if fmt == SHAREGPT:
        return [_sharegpt(v) for v in cells[SHAREGPT_COLUMN]]
    if fmt == ALPACA:
        n = len(cells["instruction"])
        extra = cells.get("input") or [None] * n
        return [_alpaca(i, x, o) for i, x, o in zip(cells["instruction"], extra, cells["output"])]
    return list(cells[cfg.messages_column])
