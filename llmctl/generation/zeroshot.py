"""Zero-shot classification: score every label by a generative model's log-likelihood of its
verbalizer after the prompt (decoder-only), or of the verbalizer as the target (T5), and pick
the most likely label; tokenized and scored as lm-evaluation-harness does (loglikelihood.py).
Metrics are the classification task's (accuracy, f1, ...), with `loss` the cross-entropy of
the label scores normalised over the labels, and the harness's `acc_norm`.
"""

from __future__ import annotations

import logging

from llmctl.events import log_notes
from llmctl.metrics.choice_norm import norm_lengths

# Reported besides the classification metrics (and gateable with --fail-under).
ZERO_SHOT_METRICS = ["acc_norm"]
# Rendered by llmctl.console (route_logs): generation never prints.
_log = logging.getLogger(__name__)


def fill_template(template: str, columns: list[str], texts: list[list[str]]) -> list[str]:
    return [template.format(**{c: texts[k][i] for k, c in enumerate(columns)}) for i in range(len(texts[0]))]


def add_examples(prompts: list[str], task, zero_shot, data_cfg, spec: str) -> tuple[list[str], dict]:
    """The prompts after num_fewshot labelled examples each (llmctl.generation.fewshot: drawn as
    lm-evaluation-harness draws them), and what the result reports about them. Refusals (the scored
    split as examples, too few examples) come before any model loads."""
    from llmctl.generation.fewshot import fewshot_spec, sample_examples, with_examples

    source = fewshot_spec(zero_shot, data_cfg, spec)
    # every row of the few-shot split is a candidate, as in the harness: no max_eval_samples
    examples_task = task.with_data(data_cfg.model_copy(update={"max_eval_samples": None}))
    examples = examples_task._load_split("fewshot", source, "zero_shot.fewshot_split", True)
    names = task.labels.names
    answers = [zero_shot.verbalizers[names[i]] for i in examples_task._label_ids(examples)]
    draws = sample_examples(len(examples), zero_shot.num_fewshot, len(prompts), zero_shot.fewshot_seed, examples.where)
    filled = fill_template(zero_shot.template, data_cfg.text_columns, examples.texts)
    prompts = with_examples(prompts, filled, answers, draws, zero_shot.fewshot_delimiter)
    return prompts, {"fewshot_seed": zero_shot.fewshot_seed, "fewshot_split": examples.where,
                     "fewshot_delimiter": zero_shot.fewshot_delimiter}


def evaluate_zero_shot(model: str, recipe, spec: str, batch_size: int = 64, device: str | None = None,
                       precision: str = "auto", warn=None, with_predictions: bool = False) -> dict:
    """Score the split `spec` of recipe.data with the recipe's zero_shot section. `with_predictions`:
    the result's "predictions" holds one row per example (`eval --save-predictions`): what the
    classification task writes for a prediction (the label, its score and every label's, here
    each label's likelihood normalised over the labels), each label's summed log-likelihood, and
    the reference label."""
    import numpy as np
    import torch

    from llmctl.generation.model import (context_limit, generation_kind, load_checked, load_config,
                                         load_tokenizer, resolve_source)
    from llmctl.generation.loglikelihood import cut_count, encode_requests, score_causal, score_seq2seq
    from llmctl.generation.model import quiet_transformers
    from llmctl.tasks.base import Labels
    from llmctl.tasks.classification import ClassificationTask

    warn = warn or _log.warning
    zero_shot, data_cfg = recipe.zero_shot, recipe.data
    labels = data_cfg.label_names or list(zero_shot.verbalizers)
    task = ClassificationTask(data_cfg, Labels(tuple(labels)))
    split = log_notes(task.load_split("eval", spec), _log)  # data errors surface before any model loads
    prompts = fill_template(zero_shot.template, data_cfg.text_columns, split.texts)
    fewshot = {}
    if zero_shot.num_fewshot:
        prompts, fewshot = add_examples(prompts, task, zero_shot, data_cfg, spec)

    quiet_transformers()
    source = resolve_source(model)
    config = load_config(source, recipe.model.trust_remote_code)
    kind = generation_kind(config, source)
    tokenizer, pad_added = load_tokenizer(source, kind, recipe.model.trust_remote_code)
    verbalizers = [zero_shot.verbalizers[l] for l in labels]
    requests = encode_requests(prompts, verbalizers, tokenizer, kind)
    limit = context_limit(config, tokenizer, kind)
    cut = cut_count(requests, limit, kind)
    if cut:
        warn(f"{cut} prompt(s) longer than the model's context were cut from the left.")
    gen = load_checked(source, kind, precision, device, recipe.model.trust_remote_code, tokenizer, pad_added)
    with torch.inference_mode():
        if kind == "causal":
            sums = score_causal(gen.model, requests, batch_size, gen.device, limit)
        else:
            sums = score_seq2seq(gen.model, requests, batch_size, gen.device, tokenizer.pad_token_id, limit)
    sums = sums.numpy()
    scores = sums
    if zero_shot.score == "mean":
        scores = sums / np.array([[len(c) for c in r.continuations] for r in requests], dtype=np.float64)
    metrics = task.compute_metrics({"logits": list(scores)}, None, split)
    # The harness's acc_norm: the same choice, by log-likelihood per character of the choice.
    normed = sums / np.array(norm_lengths(verbalizers), dtype=np.float64)
    metrics["acc_norm"] = task.compute_metrics({"logits": list(normed)}, None, split)["accuracy"]
    predictions = {}
    if with_predictions:
        rows = task.format_predictions({"logits": list(scores)}, None, split)
        predictions = {"predictions": [
            row | {"loglikelihoods": {name: round(float(v), 6) for name, v in zip(labels, sums[i])}, "reference": ref}
            for i, (row, ref) in enumerate(zip(rows, task.references(split)))]}
    return predictions | {"metrics": metrics, "model": source, "data": split.where, "samples": len(split),
            "zero_shot": {"labels": labels, "verbalizers": zero_shot.verbalizers, "score": zero_shot.score,
                          "model_kind": kind, "precision": gen.precision, "num_fewshot": zero_shot.num_fewshot,
                          **fewshot,
                          # The tokenizer's own convention decides, as in the harness; shown because it moves scores.
                          "bos_prepended": tokenizer.bos_token_id is not None
                          and requests[0].context[0] == tokenizer.bos_token_id}}
