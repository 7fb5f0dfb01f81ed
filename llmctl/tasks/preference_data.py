"""Preference rows: reading prompt / chosen / rejected in TRL's two formats, and tokenizing them as
TRL 1.16's DPOTrainer does.

- plain text: three strings; EOS is appended to each response (unless it ends with it), and the
  prompt and prompt + response are tokenized, the response being what follows their common prefix.
- conversational: `prompt` a list of messages, `chosen` / `rejected` lists holding the assistant
  turn; rendered with the tokenizer's chat template (the prompt with the generation prompt).

Rows whose chosen equals their rejected teach nothing (their loss gradient is zero): they are
skipped and counted in a note. So are rows whose prompt alone fills data.max_length, which leave
no response token to score (TRL drops them too). Longer rows keep the whole prompt and lose the
responses' ends; a note counts them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from llmctl.data.sources import load_split, looks_like_file, read_table, row_location
from llmctl.errors import DataError
from llmctl.events import Note
from llmctl.tasks import chat


@dataclass
class PreferenceSplit:
    where: str
    role: str
    prompts: list  # strings, or lists of messages (conversational)
    chosen: list
    rejected: list
    rows: list[int]  # each pair's row in the file, for messages
    conversational: bool = False
    header: bool = True
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.prompts)


def _messages(value, at: str, ends_with: str) -> list[dict] | None:
    """A list of messages checked (chat.conversation), or None when `value` is not a list."""
    if hasattr(value, "tolist"):  # a parquet list column comes back from pandas as a numpy array
        value = value.tolist()
    if not isinstance(value, list):
        return None
    return chat.conversation(value, at, ends_with)


def read_split(cfg, role: str, spec: str, limit: int | None) -> PreferenceSplit:
    """Read and check one split; the first `limit` rows only."""
    from llmctl.tasks import generative as gen
    from llmctl.tasks.classification_data import missing_column

    key = f"data.{role}"
    header = cfg.column_names is None
    if cfg.dataset and not looks_like_file(spec):
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names, cfg.text_split, cfg.revision)
        ds = gen.limit_rows(ds, limit, key, where)
        columns = list(ds.column_names)
        values = {name: list(ds[name]) if name in columns else None
                  for name in (cfg.prompt_column, cfg.chosen_column, cfg.rejected_column)}
    else:
        path = Path(spec).expanduser()
        frame = read_table(path, key, cfg.column_names, cfg.text_split, nested=True)
        where, columns = str(path), [str(c) for c in frame.columns]
        if limit is not None:
            frame = frame.iloc[:limit]
        if len(frame) == 0:
            raise DataError(f"{key}: {where} has no rows.", "Give a file with at least one preference pair.")
        values = {name: frame[name].tolist() if name in columns else None
                  for name in (cfg.prompt_column, cfg.chosen_column, cfg.rejected_column)}
    for setting, name in (("prompt_column", cfg.prompt_column), ("chosen_column", cfg.chosen_column),
                          ("rejected_column", cfg.rejected_column)):
        if values[name] is None:
            raise missing_column(f"data.{setting}", name, where, columns)
    prompts, chosen, rejected = values[cfg.prompt_column], values[cfg.chosen_column], values[cfg.rejected_column]
    first = prompts[0].tolist() if hasattr(prompts[0], "tolist") else prompts[0]
    conversational = isinstance(first, list)
    out_p, out_c, out_r = [], [], []
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        at = row_location(where, i, header)
        if conversational:
            prompt = _messages(p, at, "user")
            pair = [_messages(v, at, "assistant") for v in (c, r)]
            if prompt is None or None in pair:
                raise DataError(f"{at}: the first row is conversational (lists of messages), this one is not.",
                                "Give every row in one format: all plain text, or all lists of messages.")
            out_p.append(prompt)
            out_c.append(pair[0])
            out_r.append(pair[1])
            continue
        texts = []
        for setting, name, value in (("prompt_column", cfg.prompt_column, p), ("chosen_column", cfg.chosen_column, c),
                                     ("rejected_column", cfg.rejected_column, r)):
            if not isinstance(value, str) or (setting != "prompt_column" and not value.strip()):
                got = "nothing" if value is None or value != value else f"{type(value).__name__} {str(value)[:40]!r}"
                raise DataError(f"{at}: column '{name}' holds {got}; it must be {'a' if setting == 'prompt_column' else 'a non-empty'} string "
                                "(or, in every row, a list of messages).", "Fix that row.")
            texts.append(value)
        out_p.append(texts[0])
        out_c.append(texts[1])
        out_r.append(texts[2])
    split = PreferenceSplit(where=where, role=role, prompts=out_p, chosen=out_c, rejected=out_r,
                            rows=list(range(len(out_p))), conversational=conversational, header=header)
    return _without_ties(split)


def _without_ties(split: PreferenceSplit) -> PreferenceSplit:
    keep = [i for i, (c, r) in enumerate(zip(split.chosen, split.rejected)) if c != r]
    if len(keep) == len(split):
        return split
    first = row_location(split.where, split.rows[next(i for i in range(len(split)) if i not in set(keep))],
                         split.header)
    if not keep:
        raise DataError(f"{split.where}: in every row chosen equals rejected (first: {first}), so there is no "
                        "preference to learn.", "Check data.chosen_column and data.rejected_column.")
    note = Note(f"{split.where}: skipped {len(split) - len(keep)} row(s) whose chosen equals their rejected "
                f"(first: {first}); they carry no preference.", warning=True)
    return replace(split, prompts=[split.prompts[i] for i in keep], chosen=[split.chosen[i] for i in keep],
                   rejected=[split.rejected[i] for i in keep], rows=[split.rows[i] for i in keep],
                   notes=split.notes + (note,))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize(split: PreferenceSplit, tokenizer, max_length: int):
    """(prompt ids, chosen ids, rejected ids, notes) as TRL tokenizes them, truncated to max_length."""
    from llmctl.models.chat_template import render

    if split.conversational:
        chat.require_template(tokenizer, tokenizer.name_or_path)
        prompts = [render(tokenizer, p, add_generation_prompt=True) for p in split.prompts]
        full_c = [render(tokenizer, p + c, add_generation_prompt=False) for p, c in zip(split.prompts, split.chosen)]
        full_r = [render(tokenizer, p + r, add_generation_prompt=False) for p, r in zip(split.prompts, split.rejected)]
        special = False
    else:
        eos = tokenizer.eos_token or ""
        prompts = list(split.prompts)
        full_c = [p + (c if c.endswith(eos) else c + eos) for p, c in zip(split.prompts, split.chosen)]
        full_r = [p + (r if r.endswith(eos) else r + eos) for p, r in zip(split.prompts, split.rejected)]
        special = True
    enc_p = tokenizer(prompts, add_special_tokens=special)["input_ids"]
    enc_c = tokenizer(full_c, add_special_tokens=special)["input_ids"]
    enc_r = tokenizer(full_r, add_special_tokens=special)["input_ids"]
    out_p, out_c, out_r, kept, cut, too_long = [], [], [], [], 0, []
    for i, (p, c, r) in enumerate(zip(enc_p, enc_c, enc_r)):
        n = min(_common_prefix(p, c), _common_prefix(p, r))
        prompt, chosen, rejected = p[:n], c[n:], r[n:]
        if len(prompt) >= max_length:
            too_long.append(split.rows[i])
            continue
        room = max_length - len(prompt)
        if len(chosen) > room or len(rejected) > room:
            cut += 1
        out_p.append(prompt)
        out_c.append(chosen[:room])
        out_r.append(rejected[:room])
        kept.append(i)
    notes = []
    if too_long:
        at = row_location(split.where, too_long[0], split.header)
        if not out_p:
            raise DataError(f"{split.where}: every prompt fills data.max_length ({max_length} tokens) on its own "
                            f"(first: {at}), leaving no response to score.",
                            "Raise data.max_length or shorten the prompts.")
        notes.append(Note(f"{split.where}: skipped {len(too_long)} row(s) whose prompt alone fills data.max_length "
                          f"({max_length} tokens; first: {at}).", warning=True))
    if cut:
        notes.append(Note(f"{split.where}: {cut} of {len(out_p)} pair(s) cut to data.max_length ({max_length} "
                          "tokens): the prompt kept whole, the responses' ends dropped."))
    return out_p, out_c, out_r, kept, tuple(notes)
