"""Batched generation: encode and check prompts, generate in length-sorted batches, cut at stop
strings and say why each completion ended. Decoding settings: decoding.py.

Finish reasons: `stop` (a stop string was generated; the completion ends just before it),
`eos` (the model emitted its end-of-sequence token), `length` (max_new_tokens ran out).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from llmctl.errors import DataError, UsageError

DECODE = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


@dataclass
class Settings:
    max_new_tokens: int = 64
    sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    repetition_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    batch_size: int = 16
    chat: bool = False
    system: str | None = None
    truncate_left: bool = False

    def check(self) -> "Settings":
        """Reject impossible values before anything loads; sampling knobs imply sampling."""
        problems = []
        if self.max_new_tokens < 1:
            problems.append("--max-new-tokens must be at least 1")
        if self.temperature is not None and self.temperature <= 0:
            problems.append("--temperature must be above 0 (use greedy decoding, the default, for temperature 0)")
        if self.top_k is not None and self.top_k < 0:
            problems.append("--top-k must be 0 (off) or more")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append("--top-p must be in (0, 1]")
        if self.num_beams < 1:
            problems.append("--num-beams must be at least 1")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            problems.append("--repetition-penalty must be above 0 (1.0 means none)")
        if self.batch_size < 1:
            problems.append("--batch-size must be at least 1")
        if any(s == "" for s in self.stop):
            problems.append("--stop must not be empty")
        if self.system is not None and not self.chat:
            problems.append("--system needs --chat (the system message goes into the chat template)")
        elif self.system is not None and not self.system.strip():
            problems.append("--system must not be empty")
        if problems:
            raise UsageError("; ".join(problems) + ".")
        if any(v is not None for v in (self.temperature, self.top_k, self.top_p)):
            self.sample = True
        return self


def encode_prompts(texts: list[str], wheres: list[str], tokenizer, kind: str, limit: int | None,
                   settings: Settings, prompts: list | None = None) -> tuple[list[list[int]], int]:
    """Token ids per prompt (chat template applied with --chat); returns (ids, number truncated).

    `prompts` (Prompt objects, same order) carry conversations from jsonl `messages` rows.
    A prompt that leaves no room for max_new_tokens in the model's context is an error, or is
    cut from the left (the end of a prompt is what the model continues) with --truncate-left.
    """
    from llmctl.generation.prompts import Prompt, chat_prompt

    prompts = prompts or [Prompt(text, where) for text, where in zip(texts, wheres)]
    conversation = next((p for p in prompts if p.messages is not None), None)
    if conversation is not None and not settings.chat:
        raise UsageError(f"{conversation.where}: a 'messages' row needs --chat (the tokenizer's chat template "
                         "turns the conversation into a prompt).", "Pass --chat.")
    if settings.chat and not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"--chat: the tokenizer of '{tokenizer.name_or_path}' has no chat template.",
                         "Drop --chat to send the prompts as plain text, or use a chat model.")
    encoded = []
    for prompt in prompts:
        if settings.chat:
            # The template writes the special tokens itself; the tokenizer must not add them again.
            text = chat_prompt(tokenizer, prompt, settings.system)
            encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            encoded.append(tokenizer(prompt.text)["input_ids"])
    for ids, where in zip(encoded, wheres):
        if not ids:
            raise DataError(f"Prompt {where} encodes to no tokens.", "Give some text to continue.")
    if limit is None:
        return encoded, 0
    budget = limit - settings.max_new_tokens if kind == "causal" else limit
    if budget < 1:
        raise UsageError(f"--max-new-tokens {settings.max_new_tokens} leaves no room for a prompt in the model's "
                         f"context of {limit} tokens.", f"Use --max-new-tokens below {limit}.")
    long = [i for i, ids in enumerate(encoded) if len(ids) > budget]
    if long and not settings.truncate_left:
        first = long[0]
        more = f" ({len(long) - 1} more prompts are too long)" if len(long) > 1 else ""
        room = f"with --max-new-tokens {settings.max_new_tokens}, the model's context of {limit} leaves " \
            if kind == "causal" else "the model's limit is "
        raise DataError(f"Prompt {wheres[first]} has {len(encoded[first])} tokens; {room}{budget}{more}.",
                        f"Shorten it{', lower --max-new-tokens' if kind == 'causal' else ''}, or pass "
                        f"--truncate-left to keep its last {budget} tokens.")
    for i in long:
        encoded[i] = encoded[i][-budget:]
    return encoded, len(long)


def eos_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])


def first_stop(text: str, stops: list[str]) -> int | None:
    """Index of the earliest occurrence of any stop string, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def finish(ids: list[int], tokenizer, eos: set[int], stops: list[str]) -> tuple[str, str, int]:
    """(completion, finish_reason, completion_tokens) for one row of generated ids.

    Rows that ended early in a batch are padded after their last token; cutting at the first
    eos and at the first stop string gives the same text the row would have alone.
    """
    cut = next((i for i, t in enumerate(ids) if t in eos), None)
    body = ids if cut is None else ids[:cut]
    text = tokenizer.decode(body, **DECODE)
    hit = first_stop(text, stops)
    if hit is not None:
        # Fewest tokens whose text already holds the stop string: the tokens generated up to it.
        low, high = 1, len(body)
        while low < high:
            mid = (low + high) // 2
            if first_stop(tokenizer.decode(body[:mid], **DECODE), stops) is None:
                low = mid + 1
            else:
                high = mid
        return text[:hit], "stop", low
    if cut is not None:
        return text, "eos", cut + 1
    return text, "length", len(body)


class StopStrings:
    """Ends a row once its completion (never the prompt) holds a stop string.

    transformers' StopStringCriteria also matches a stop string that starts inside the
    prompt, which would end a row at its first token for no visible reason.
    """

    def __init__(self, tokenizer, stops: list[str], skip: int):
        self.tokenizer, self.stops, self.skip = tokenizer, stops, skip

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.skip:], **DECODE)
        return torch.tensor([first_stop(t, self.stops) is not None for t in texts], device=input_ids.device)


# Batches are length-sorted within windows of this many batches of consecutive prompts, not over
# the whole input: rows can then be printed in input order a window at a time while the rest is
# still generating (sorted globally, the first prompt's row could wait for the very last batch),
# at the price of a little more padding.
WINDOW_BATCHES = 8


def batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Input positions per batch: longest first within each window, so a batch holds similar lengths."""
    out, window = [], batch_size * WINDOW_BATCHES
    for first in range(0, len(lengths), window):
        part = sorted(range(first, min(first + window, len(lengths))), key=lambda i: -lengths[i])
        out += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
    return out


def generate(gen, encoded: list[list[int]], settings: Settings, streamer=None,
             on_rows=None) -> tuple[list[dict], dict]:
    """Generate for every encoded prompt; returns (rows in input order, stats).
    `on_rows([(position, row), ...])` is called as each batch finishes.

    Decoder-only prompts are left-padded and masked, so padding changes no result in exact
    arithmetic; in floating point a batch's shape changes the rounding, which in fp32 flips a
    greedy choice only on a tie to ~1e-6 but in bf16/fp16 does flip near-ties (README, "Generation").
    """
    import torch
    from transformers import StoppingCriteriaList, set_seed

    from llmctl.generation.blas import threads_restored
    from llmctl.generation.decoding import decoding, generation_config

    model, tokenizer = gen.model, gen.tokenizer
    config = generation_config(model, tokenizer, settings)
    eos = eos_ids(model)
    if settings.seed is not None:
        set_seed(settings.seed)
    rows: list[dict | None] = [None] * len(encoded)
    start = time.perf_counter()
    with torch.inference_mode(), threads_restored():
        for chunk in batches([len(ids) for ids in encoded], settings.batch_size):
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt").to(gen.device)
            # Decoder-only output repeats the (padded) prompt; encoder-decoder output opens with the start token.
            skip = batch["input_ids"].shape[1] if gen.kind == "causal" else 1
            criteria = StoppingCriteriaList([StopStrings(tokenizer, settings.stop, skip)] if settings.stop else [])
            out = model.generate(**batch, generation_config=config, stopping_criteria=criteria, streamer=streamer)
            new = out[:, skip:]
            for row, i in zip(new.tolist(), chunk):
                text, reason, count = finish(row, tokenizer, eos, settings.stop)
                rows[i] = {"completion": text, "finish_reason": reason, "prompt_tokens": len(encoded[i]),
                           "completion_tokens": count}
            if on_rows is not None:
                on_rows([(i, rows[i]) for i in chunk])
    runtime = time.perf_counter() - start
    new_tokens = sum(r["completion_tokens"] for r in rows)
    stats = {"prompts": len(rows), "new_tokens": new_tokens, "runtime_s": round(runtime, 4),
             "tokens_per_second": round(new_tokens / runtime, 2) if runtime > 0 else None,
             "precision": gen.precision, "device": gen.device, "decoding": decoding(settings)}
    if gen.plan is not None:
        stats["precision_plan"] = gen.plan
    return rows, stats
