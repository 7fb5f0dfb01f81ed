"""log P(continuation | context) for (context, continuation) text pairs, tokenized and scored the
way lm-evaluation-harness's HFLM does (lm_eval/models/huggingface.py, lm_eval/api/model.py
`_encode_pair`), so that a zero-shot score here equals the harness's on the same model, prompt
and choices.

The harness's conventions, mirrored on purpose:
- Special tokens follow the tokenizer's own convention: `tokenizer.encode(text)` with its default
  `add_special_tokens`. A tokenizer whose post-processor adds a bos (Llama-2, Gemma) gets it; one
  that never adds it (GPT-2, SmolLM2, Qwen2) gets none, even when it *has* a bos token: SmolLM2's
  bos is `<|im_start|>`, a chat-turn marker that would otherwise open every plain-text prompt.
  A prompt that already starts with that token's text is encoded with no special tokens.
- Trailing whitespace of the context moves to the front of the continuation ("Sentiment: " +
  "negative" is scored as "Sentiment:" + " negative"), where BPE vocabularies keep word spaces.
- Decoder-only: the continuation's tokens are the tail of `encode(context + continuation)` after
  `len(encode(context))` tokens, so they are the tokens the whole text really has; the model
  reads `(context + continuation)[-(limit + 1):][:-1]` (cut from the left when too long).
- Encoder-decoder (T5): the context is encoded with the tokenizer's special tokens (T5 adds
  `</s>`), the continuation without (no `</s>` after the answer).
- An empty context is replaced by the bos token (eos when there is none).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmctl.errors import ModelError


@dataclass
class Request:
    context: list[int]
    continuations: list[list[int]]  # one per choice


def move_space(context: str, continuation: str) -> tuple[str, str]:
    spaces = len(context) - len(context.rstrip())
    return (context[:-spaces], context[-spaces:] + continuation) if spaces else (context, continuation)


def prefix_token(tokenizer) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encoder(tokenizer):
    """encode(texts, special=None) -> ids per text: the tokenizer's default special tokens unless
    `special` says otherwise or the text already starts with the prefix token's text."""
    prefix = prefix_token(tokenizer)
    prefix_text = tokenizer.decode([prefix]) if prefix is not None else None

    def encode(texts: list[str], special: bool | None = None) -> list[list[int]]:
        flags = [special if special is not None else not (prefix_text and t.startswith(prefix_text)) for t in texts]
        out: list = [None] * len(texts)
        for flag in set(flags):  # one batched call per setting: usually a single call
            where = [i for i, f in enumerate(flags) if f == flag]
            ids = tokenizer([texts[i] for i in where], add_special_tokens=flag)["input_ids"] if where else []
            for i, row in zip(where, ids):
                out[i] = list(row)
        return out

    return encode


def encode_requests(contexts: list[str], choices: list[str] | list[list[str]], tokenizer, kind: str) -> list[Request]:
    """One Request per context, with every choice as a continuation of it: the same choices for
    every context (a list of texts), or each context's own (a list of lists, multiple choice)."""
    encode = encoder(tokenizer)
    prefix = prefix_token(tokenizer)
    per_row = choices if choices and isinstance(choices[0], list) else [choices] * len(contexts)
    split = [[move_space(c, choice) for choice in row] for c, row in zip(contexts, per_row)]
    stripped = [pairs[0][0] for pairs in split]  # the space move depends on the context only
    # An empty context is scored after the prefix token alone, with the continuation bare.
    empty = [not c for c in stripped]
    filled = [c for c in stripped if c]
    context_ids = iter(encode(filled))
    requests = []
    if kind == "causal":
        wholes = iter(encode([c + cont for pairs, e in zip(split, empty) if not e for c, cont in pairs]))
    bare: dict[str, list[int]] = {}  # filled as continuations are needed alone
    for pairs, is_empty in zip(split, empty):
        if is_empty:
            conts = [bare_or_spaced(encode, cont, bare) for _, cont in pairs]
            requests.append(empty_context(prefix, conts))
            continue
        ctx = next(context_ids)
        if kind == "causal":
            conts = [next(wholes)[len(ctx):] for _ in pairs]
        else:
            conts = [bare_or_spaced(encode, cont, bare) for _, cont in pairs]
        requests.append(Request(ctx, conts))
    return requests


def bare_or_spaced(encode, continuation: str, bare: dict) -> list[int]:
    """The continuation alone, without special tokens; remembered, since a template's trailing
    space makes the same spaced continuation for every row."""
    if continuation not in bare:
        bare[continuation] = encode([continuation], special=False)[0]
    return bare[continuation]


def empty_context(prefix: int | None, continuations: list[list[int]]) -> Request:
    # The harness's rule: the prefix token is the context; a continuation whose text starts with
    # that token gives it up, so the token is not read twice.
    if prefix is None:
        raise ModelError("A prompt filled in empty, and the tokenizer has neither a bos nor an eos token to score it after.",
                         "Give every row text, or a zero_shot.template with words of its own around the columns.")
    return Request([prefix], [c[1:] if c and c[0] == prefix else c for c in continuations])


def cut_count(requests: list[Request], limit: int | None, kind: str) -> int:
    """How many contexts the model's limit cuts (the scorers cut them from the left, as the harness does)."""
    if limit is None:
        return 0
    # Decoder-only: the last continuation token is predicted, never read, so limit + 1 tokens fit.
    if kind == "causal":
        return sum(any(len(r.context) + len(c) > limit + 1 for c in r.continuations) for r in requests)
    return sum(len(r.context) > limit for r in requests)


def tail(ids: list[int], n: int | None) -> list[int]:
    return ids[-n:] if n else ids


def fits(request: Request, limit: int | None) -> bool:
    """Whether every choice of the request reads its whole context (no left cut) and has tokens to score."""
    return all(c for c in request.continuations) and (
        limit is None or len(request.context) + max(map(len, request.continuations)) <= limit + 1)


def score_causal(model, requests: list[Request], batch_size: int, device: str, limit: int | None = None):
    """log P(continuation | context) summed over its tokens, as a [contexts, choices] float64 tensor.

    Every choice of a request reads the same context, so the context runs once (llmctl.generation.
    shared_context): its last position scores each choice's first token, which is all a one-token
    choice needs (SST-2's " negative" / " positive"), and longer choices continue from its key/value
    cache. A request whose text the model's limit cuts reads a different window per choice and is
    scored choice by choice, as the harness does."""
    import torch

    from llmctl.generation.shared_context import score_shared

    sums = torch.zeros(len(requests), max(len(r.continuations) for r in requests), dtype=torch.float64)
    whole = [i for i, r in enumerate(requests) if fits(r, limit)]
    score_shared(model, requests, whole, batch_size, device, sums)
    chosen = set(whole)
    score_readers(model, requests, [i for i in range(len(requests)) if i not in chosen], batch_size, device,
                  limit, sums)
    return sums


def score_readers(model, requests: list[Request], which: list[int], batch_size: int, device: str,
                  limit: int | None, sums) -> None:
    """Score requests `which` into `sums`, one input per distinct window the model reads."""
    import torch

    # The model reads (context + continuation)[:-1], cut to the limit: choices that differ only in
    # their last token read the same tokens, so one forward pass serves them all.
    readers: dict[tuple, list[tuple[int, int]]] = {}
    for i in which:
        for j, c in enumerate(requests[i].continuations):
            readers.setdefault(tuple(tail(requests[i].context + c, limit and limit + 1)[:-1]), []).append((i, j))
    inputs = sorted(readers, key=len, reverse=True)
    for b in range(0, len(inputs), batch_size):
        chunk = inputs[b:b + batch_size]
        width = len(chunk[0])
        # A continuation longer than its window (cut into) is scored on the tokens the window predicts.
        keep = min(width, max(1, max(len(requests[i].continuations[j]) for s in chunk for i, j in readers[s])))
        # Left padding puts every continuation at the end, so only the last `keep` logits are
        # needed; explicit positions make a padded row score exactly like an unpadded one.
        ids = torch.tensor([[0] * (width - len(s)) + list(s) for s in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in chunk], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits[:, -keep:].float(), dim=-1)
        for row, s in enumerate(chunk):
            for i, j in readers[s]:
                n = min(len(requests[i].continuations[j]), len(s))
                if n:
                    tokens = torch.tensor(requests[i].continuations[j][-n:], device=device)
                    sums[i, j] = logprobs[row, keep - n:].gather(-1, tokens[:, None]).sum().item()


def score_seq2seq(model, requests: list[Request], batch_size: int, device: str, pad_id: int,
                  limit: int | None = None):
    import torch

    pairs = [(i, j) for i, r in enumerate(requests) for j in range(len(r.continuations))]
    pairs.sort(key=lambda p: -len(requests[p[0]].context))
    sums = torch.zeros(len(requests), max(len(r.continuations) for r in requests), dtype=torch.float64)
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b:b + batch_size]
        contexts = [tail(requests[i].context, limit) for i, _ in chunk]
        targets = [tail(requests[i].continuations[j], limit) for i, j in chunk]
        width, t_width = max(map(len, contexts)), max(map(len, targets))
        ids = torch.tensor([c + [pad_id] * (width - len(c)) for c in contexts], device=device)
        mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in contexts], device=device)
        labels = torch.tensor([t + [-100] * (t_width - len(t)) for t in targets], device=device)
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)
        for row, (i, j) in enumerate(chunk):
            sums[i, j] = picked[row].sum().item()
    return sums
