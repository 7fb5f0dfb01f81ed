"""Zero-shot multiple choice: a generative model llmctl never trained (a folder, a Hub id or a
.gguf file, loaded as `llmctl generate` loads it) scores every ending by its log-likelihood;
the task's own features, batches and metrics (llmctl.tasks.multiple_choice) do the rest, so
the numbers are those a fine-tuned run of the same model would report.
"""

from __future__ import annotations

import logging

from llmctl.events import log_notes

# Rendered by llmctl.console (route_logs): generation never prints.
_log = logging.getLogger(__name__)


def generative_family(model: str, trust_remote_code: bool = False) -> str | None:
    """"causal" or "seq2seq" from the model's config alone; None for an encoder, which has to be
    fine-tuned first (its multiple-choice head would start at random)."""
    from llmctl.generation.model import load_config, resolve_source
    from llmctl.tasks.multiple_choice import family

    kind = family(load_config(resolve_source(model), trust_remote_code))
    return None if kind == "encoder" else kind


def evaluate_choices(model: str, recipe, spec: str, batch_size: int = 64, device: str | None = None,
                     precision: str = "auto", with_predictions: bool = False) -> dict:
    import torch

    from llmctl.generation.model import generation_kind, load_checked, load_config, load_tokenizer, resolve_source
    from llmctl.generation.model import quiet_transformers
    from llmctl.tasks.multiple_choice import MultipleChoiceTask
    from llmctl.train.batching import eval_batches
    from llmctl.train.evaluate import to_device

    quiet_transformers()
    source = resolve_source(model)
    trust = recipe.model.trust_remote_code
    kind = generation_kind(load_config(source, trust), source)
    task = MultipleChoiceTask(recipe.data, kind=kind)
    split = log_notes(task.load_split("eval", spec), _log)  # data errors surface before any weight loads
    tokenizer, pad_added = load_tokenizer(source, kind, trust)
    # A decoder's features (its cut note) come from the requests below; T5's from the task.
    features = log_notes(task.featurize(split, tokenizer), _log) if kind != "causal" else None
    gen = load_checked(source, kind, precision, device, trust, tokenizer, pad_added)
    if kind == "causal":  # every ending after its context's one pass (llmctl.generation.shared_context)
        kept = {"scores": list(_causal_scores(gen, split, tokenizer, recipe.data.max_length, batch_size))}
    else:
        kept = {"scores": [None] * len(features)}
        with torch.inference_mode():
            for batch_ids in eval_batches(features.lengths, batch_size):
                inputs = task.collate(features.rows(batch_ids), tokenizer)
                index = inputs.pop("index").tolist()
                outputs = task.eval_outputs(gen.model, to_device(inputs, gen.device))
                for row, i in zip(outputs.scores.float().cpu().numpy(), index):
                    kept["scores"][i] = row
    result = {"metrics": task.compute_metrics(kept, features, split), "model": source, "data": split.where,
              "samples": len(split), "precision": gen.precision,
              "zero_shot": {"model_kind": kind, "precision": gen.precision}}
    if with_predictions:  # `eval --save-predictions`: each ending's log-likelihood, the pick, the reference
        rows = task.format_predictions(kept, features, split)
        result["predictions"] = [row | {"reference": ref} for row, ref in zip(rows, task.references(split))]
    return result


def _causal_scores(gen, split, tokenizer, max_length: int, batch_size: int):
    """[rows, endings] log P(" " + ending | prompt), tokenized as the task's features and the harness
    tokenize it (the prompt's own tokens, each ending the tail of prompt + ending), a context longer
    than data.max_length cut from the left."""
    import torch

    from llmctl.generation.loglikelihood import cut_count, encode_requests, score_causal

    requests = encode_requests([split.prompt(i) for i in range(len(split))],
                               [[" " + e for e in split.endings[i]] for i in range(len(split))], tokenizer, "causal")
    cut = cut_count(requests, max_length, "causal")
    if cut:
        _log.warning(f"{split.where}: {cut} example(s) longer than data.max_length {max_length} tokens were cut "
                     "(a decoder's context from the left); raise data.max_length to score them whole.")
    with torch.inference_mode():
        return score_causal(gen.model, requests, batch_size, gen.device, max_length).numpy()
