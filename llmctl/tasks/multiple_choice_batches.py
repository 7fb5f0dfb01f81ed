"""Multiple-choice features and batches for the three model families.

- encoder (BERT family, AutoModelForMultipleChoice): each ending paired with the context, rows of
  [choices][tokens], batched as [batch, choices, seq] tensors.
- causal (GPT-2, Llama, Qwen2): every ending scored by its log-likelihood after the context,
  tokenized as lm-evaluation-harness does (llmctl.generation.loglikelihood: the continuation's
  tokens are the tail of the whole text's). Training rows are context + right ending with the
  context's labels -100: the causal-LM loss on the right ending.
- seq2seq (T5): the input is the context followed by the lettered options, the target an
  ending's text; every ending is scored as the target, training learns the right one.

Training features (generative families, role "train") are plain model inputs; scoring features
hold every ending (`choice_ids` / `choice_labels`), which eval_outputs turns into [batch, choices]
summed log-likelihoods.
"""

from __future__ import annotations

from types import SimpleNamespace

from llmctl.data.collate import Padding, collate, pad_sequences
from llmctl.tasks.base import Note

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def t5_source(split, i: int) -> str:
    options = " ".join(f"({LETTERS[j] if j < 26 else j}) {e}" for j, e in enumerate(split.endings[i]))
    return f"{split.prompt(i).strip()} options: {options}"


def _grouped(flat: list, per_row: int) -> list[list]:
    return [flat[k:k + per_row] for k in range(0, len(flat), per_row)]


def featurize_encoder(split, tokenizer, max_length: int):
    """One row per example: its choices' token ids one after another (what every tool reading
    `input_ids` as flat rows expects), with `choice_widths` to cut them apart when batching."""
    from llmctl.data.features import Features

    n = len(split.endings[0])
    firsts = [split.contexts[i] for i in range(len(split)) for _ in range(n)]
    seconds = [c for i in range(len(split)) for c in split.choices(i)]
    whole = [len(ids) for ids in tokenizer(firsts, seconds)["input_ids"]]  # before truncation, for the note
    longest = [max(row) for row in _grouped(whole, n)]
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    names = ["input_ids"] + (["token_type_ids"] if "token_type_ids" in enc
                             and "token_type_ids" in tokenizer.model_input_names else [])
    columns = {name: [sum(row, []) for row in _grouped(enc[name], n)] for name in names}
    columns["choice_widths"] = _grouped([len(ids) for ids in enc["input_ids"]], n)
    if split.labels is not None:
        columns["labels"] = list(split.labels)
    features = Features(columns=columns, lengths=[len(row) for row in columns["input_ids"]])
    return _with_cut_note(features, sum(x > max_length for x in longest), split.where, max_length, longest)


def featurize_causal(split, tokenizer, max_length: int, train: bool):
    from llmctl.generation.loglikelihood import encoder, move_space
    from llmctl.data.features import Features

    encode = encoder(tokenizer)
    n = len(split.endings[0])
    pairs = [move_space(split.prompt(i), " " + e) for i in range(len(split)) for e in split.endings[i]]
    contexts = encode([ctx for ctx, _ in pairs[::n]])
    rows = range(len(split))
    if train:  # only the right ending is read
        wholes = encode([ctx + cont for i in rows for ctx, cont in [pairs[i * n + split.labels[i]]]])
    else:
        wholes = encode([ctx + cont for ctx, cont in pairs])
    # The model reads (context + ending)[:-1]; a text longer than max_length + 1 loses its start.
    limit = max_length + 1
    cut = 0
    if train:
        input_ids, labels = [], []
        for ctx, whole in zip(contexts, wholes):
            ids, marks = whole, [-100] * len(ctx) + whole[len(ctx):]
            cut += len(ids) > max_length
            input_ids.append(ids[-max_length:])
            labels.append(marks[-max_length:])
        features = Features({"input_ids": input_ids, "labels": labels}, [len(x) for x in input_ids])
    else:
        choice_ids, choice_lens = [], []
        for i, ctx in enumerate(contexts):
            row = wholes[i * n:(i + 1) * n]
            cut += any(len(w) > limit for w in row)
            choice_ids.append([w[-limit:] for w in row])
            # At least one context token stays read, so at most len - 1 ending tokens are scored.
            choice_lens.append([min(len(w) - len(ctx), len(w[-limit:]) - 1) for w in row])
        features = Features({"choice_ids": choice_ids, "choice_lens": choice_lens},
                            [sum(map(len, row)) for row in choice_ids])
    per_row = 1 if train else n
    longest = [max(len(w) - 1 for w in wholes[i * per_row:(i + 1) * per_row]) for i in rows]  # tokens the model reads
    return _with_cut_note(features, cut, split.where, max_length, longest)


def featurize_seq2seq(split, tokenizer, max_length: int, train: bool):
    from llmctl.data.features import Features

    sources = [t5_source(split, i) for i in range(len(split))]
    whole = tokenizer(sources)["input_ids"]
    cut = sum(len(x) > max_length for x in whole)
    # Cut at the end, keeping the last token (T5's </s>) as truncation does.
    enc = [x if len(x) <= max_length else x[:max_length - 1] + x[-1:] for x in whole]
    if train:
        targets = [split.endings[i][split.labels[i]] for i in range(len(split))]
        labels = tokenizer(text_target=targets, truncation=True, max_length=max_length)["input_ids"]
        features = Features({"input_ids": enc, "labels": labels}, [len(a) + len(b) for a, b in zip(enc, labels)])
    else:
        n = len(split.endings[0])
        flat = tokenizer(text_target=[e for row in split.endings for e in row], truncation=True,
                         max_length=max_length)["input_ids"]
        choice_labels = _grouped(flat, n)
        features = Features({"input_ids": enc, "choice_labels": choice_labels},
                            [len(a) + sum(map(len, b)) for a, b in zip(enc, choice_labels)])
    return _with_cut_note(features, cut, split.where, max_length, [len(x) for x in whole])


def _with_cut_note(features, cut: int, where: str, max_length: int, longest: list[int]):
    """The note on examples cut at max_length; meta["longest"]: each example's longest choice in tokens
    before truncation (the doctor's figures), meta["notes"]: the note again, for a feature-cache hit."""
    features.meta["longest"] = [int(x) for x in longest]
    if cut:
        text = (f"{where}: {cut} example(s) longer than data.max_length {max_length} tokens were cut "
                "(an encoder's pair at the end, a decoder's context from the left, T5's input at the end); raise "
                "data.max_length to score them whole.")
        features.meta["notes"] = [text]
        features.notes = (Note(text, warning=True),)
    return features


# -- batches -------------------------------------------------------------------------
def collate_encoder(rows: list[dict], pad_id: int) -> dict:
    """[batch, choices, seq] input_ids / token_type_ids / attention_mask, every choice padded to the longest."""
    import numpy as np
    import torch

    n = len(rows[0]["choice_widths"])
    batch = {}
    for name, pad in (("input_ids", pad_id), ("token_type_ids", 0)):
        if name in rows[0]:
            pieces = [piece for r in rows for piece in np.split(np.asarray(r[name]), np.cumsum(r["choice_widths"])[:-1])]
            padded, lengths = pad_sequences(pieces, pad)
            batch[name] = torch.from_numpy(padded).view(len(rows), n, -1)
            if name == "input_ids":
                real = torch.arange(padded.shape[1])[None, :] < torch.from_numpy(lengths)[:, None]
                batch["attention_mask"] = real.long().view(len(rows), n, -1)
    if "labels" in rows[0]:
        batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
    batch["index"] = torch.tensor([r["index"] for r in rows])
    return batch


def collate_training(rows: list[dict], pad_id: int) -> dict:
    return collate(rows, Padding({"input_ids": pad_id, "labels": -100}))


def collate_causal_scoring(rows: list[dict]) -> dict:
    """Every ending of every row as one left-padded sequence (its last tokens are the ending, so only
    the last `keep` logits are needed), with explicit positions so padding changes no score."""
    import torch

    seqs = [s for r in rows for s in r["choice_ids"]]
    lens = torch.tensor([r["choice_lens"] for r in rows], dtype=torch.long)
    keep = int(lens.max())
    inputs, lengths = pad_sequences([s[:-1] for s in seqs], 0, left=True)
    targets, _ = pad_sequences([s[1:][-keep:] for s in seqs], 0, left=True)
    width = inputs.shape[1]
    mask = torch.arange(width)[None, :] >= torch.from_numpy(width - lengths)[:, None]
    return {"input_ids": torch.from_numpy(inputs), "attention_mask": mask.long(),
            "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0), "targets": torch.from_numpy(targets),
            "choice_lens": lens, "index": torch.tensor([r["index"] for r in rows])}


def collate_seq2seq_scoring(rows: list[dict], pad_id: int) -> dict:
    import torch

    batch = collate(rows, Padding({"input_ids": pad_id}))
    labels, _ = pad_sequences([t for r in rows for t in r["choice_labels"]], -100)
    batch["choice_labels"] = torch.from_numpy(labels)
    return batch


# -- scores --------------------------------------------------------------------------
def causal_scores(model, inputs: dict):
    """[batch, choices] summed log P(ending | context), float64 in value (computed in float32)."""
    import torch

    lens = inputs["choice_lens"]
    keep = inputs["targets"].shape[1]
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   position_ids=inputs["position_ids"], logits_to_keep=keep).logits[:, -keep:]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, inputs["targets"][..., None])[..., 0]
    scored = torch.arange(keep, device=picked.device)[None, :] >= keep - lens.reshape(-1, 1)
    return SimpleNamespace(loss=None, scores=(picked * scored).sum(-1).view(lens.shape))


def seq2seq_scores(model, inputs: dict):
    import torch

    labels = inputs["choice_labels"]
    n = labels.shape[0] // inputs["input_ids"].shape[0]
    logits = model(input_ids=inputs["input_ids"].repeat_interleave(n, 0),
                   attention_mask=inputs["attention_mask"].repeat_interleave(n, 0), labels=labels).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)
    return SimpleNamespace(loss=None, scores=picked.sum(-1).view(-1, n))
