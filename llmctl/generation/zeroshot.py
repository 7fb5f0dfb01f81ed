"""Zero-shot classification: score every label by a generative model's log-likelihood of its
verbalizer after the prompt (decoder-only), or of the verbalizer as the target (T5), and pick
the most likely label. Metrics are the classification task's (accuracy, f1, ...), with `loss`
the cross-entropy of the label scores normalised over the labels.
"""

from __future__ import annotations

from llmctl.console import warn as console_warn


def fill_template(template: str, columns: list[str], texts: list[list[str]]) -> list[str]:
    return [template.format(**{c: texts[k][i] for k, c in enumerate(columns)}) for i in range(len(texts[0]))]


def encode_pairs(prompts: list[str], verbalizers: list[str], tokenizer, kind: str, limit: int | None):
    """(prompt ids per example, verbalizer ids per label, number of prompts cut from the left).

    The prompt and the verbalizer are tokenized separately and joined, so each label is scored
    on exactly its own tokens (a shared merge across the boundary would blur them).
    """
    if kind == "causal":
        targets = [tokenizer(v, add_special_tokens=False)["input_ids"] for v in verbalizers]
        contexts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if tokenizer.bos_token_id is not None:
            # The first prompt token has nothing to be predicted from; bos gives it a context.
            contexts = [[tokenizer.bos_token_id] + ids for ids in contexts]
    else:
        targets = [tokenizer(v)["input_ids"] for v in verbalizers]  # with </s>: the answer is complete
        contexts = [tokenizer(p)["input_ids"] for p in prompts]
    room = None if limit is None else limit - (max(map(len, targets)) if kind == "causal" else 0)
    cut = 0
    if room is not None:
        for i, ids in enumerate(contexts):
            if len(ids) > room:
                # Keep the end: the template's question ("Sentiment:") sits next to the answer.
                contexts[i], cut = ids[-room:], cut + 1
    return contexts, targets, cut


def score_causal(model, contexts, targets, batch_size: int, device: str):
    """log P(target | context) per (example, label), summed and per-token lists."""
    import torch

    pairs = [(i, j) for i in range(len(contexts)) for j in range(len(targets))]
    pairs.sort(key=lambda p: -(len(contexts[p[0]]) + len(targets[p[1]])))
    sums = torch.zeros(len(contexts), len(targets), dtype=torch.float64)
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b:b + batch_size]
        seqs = [contexts[i] + targets[j] for i, j in chunk]
        width = max(map(len, seqs))
        keep = max(len(targets[j]) for _, j in chunk) + 1
        # Left padding puts every target at the end, so only the last `keep` logits are needed;
        # explicit positions make a padded row score exactly like an unpadded one.
        ids = torch.tensor([[0] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        for row, (i, j) in enumerate(chunk):
            n = len(targets[j])
            tokens = ids[row, width - n:]
            sums[i, j] = logprobs[row, keep - 1 - n:].gather(-1, tokens[:, None]).sum().item()
    return sums


def score_seq2seq(model, contexts, targets, batch_size: int, device: str, pad_id: int):
    import torch

    pairs = [(i, j) for i in range(len(contexts)) for j in range(len(targets))]
    pairs.sort(key=lambda p: -len(contexts[p[0]]))
    sums = torch.zeros(len(contexts), len(targets), dtype=torch.float64)
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b:b + batch_size]
        width = max(len(contexts[i]) for i, _ in chunk)
        t_width = max(len(targets[j]) for _, j in chunk)
        ids = torch.tensor([contexts[i] + [pad_id] * (width - len(contexts[i])) for i, _ in chunk], device=device)
        mask = (torch.arange(width, device=device)[None, :]
                < torch.tensor([len(contexts[i]) for i, _ in chunk], device=device)[:, None]).long()
        labels = torch.tensor([targets[j] + [-100] * (t_width - len(targets[j])) for _, j in chunk], device=device)
        logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)
        for row, (i, j) in enumerate(chunk):
            sums[i, j] = picked[row].sum().item()
    return sums


def evaluate_zero_shot(model: str, recipe, spec: str, batch_size: int = 64, device: str | None = None,
                       precision: str = "auto", warn=None) -> dict:
    """Score the split `spec` of recipe.data with the recipe's zero_shot section."""
    import numpy as np
    import torch

    from llmctl.console import tell
    from llmctl.generation.model import (context_limit, generation_kind, load_checked, load_config,
                                         load_tokenizer, resolve_source)
    from llmctl.generation.run import quiet_transformers
    from llmctl.tasks.base import Labels
    from llmctl.tasks.classification import ClassificationTask

    warn = warn or console_warn
    zero_shot, data_cfg = recipe.zero_shot, recipe.data
    labels = data_cfg.label_names or list(zero_shot.verbalizers)
    task = ClassificationTask(data_cfg, Labels(tuple(labels)))
    split = tell(task.load_split("eval", spec))  # data errors surface before any model loads
    prompts = fill_template(zero_shot.template, data_cfg.text_columns, split.texts)

    quiet_transformers()
    source = resolve_source(model)
    config = load_config(source, recipe.model.trust_remote_code)
    kind = generation_kind(config, source)
    tokenizer, pad_added = load_tokenizer(source, kind, recipe.model.trust_remote_code)
    contexts, targets, cut = encode_pairs(prompts, [zero_shot.verbalizers[l] for l in labels], tokenizer, kind,
                                          context_limit(config, tokenizer, kind))
    if cut:
        warn(f"{cut} prompt(s) longer than the model's context were cut from the left.")
    gen = load_checked(source, kind, precision, device, recipe.model.trust_remote_code, tokenizer, pad_added)
    with torch.inference_mode():
        if kind == "causal":
            sums = score_causal(gen.model, contexts, targets, batch_size, gen.device)
        else:
            sums = score_seq2seq(gen.model, contexts, targets, batch_size, gen.device, tokenizer.pad_token_id)
    scores = sums.numpy()
    if zero_shot.score == "mean":
        scores = scores / np.array([len(t) for t in targets], dtype=np.float64)[None, :]
    metrics = task.compute_metrics({"logits": list(scores)}, None, split)
    return {"metrics": metrics, "model": source, "data": split.where, "samples": len(split), "output_dir": model,
            "zero_shot": {"labels": labels, "verbalizers": zero_shot.verbalizers, "score": zero_shot.score,
                          "model_kind": kind, "precision": gen.precision}}
