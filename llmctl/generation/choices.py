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
                     precision: str = "auto") -> dict:
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
    features = log_notes(task.featurize(split, tokenizer), _log)
    gen = load_checked(source, kind, precision, device, trust, tokenizer, pad_added)
    kept: dict[str, list] = {"scores": [None] * len(features)}
    with torch.inference_mode():
        for batch_ids in eval_batches(features.lengths, batch_size):
            inputs = task.collate(features.rows(batch_ids), tokenizer)
            index = inputs.pop("index").tolist()
            outputs = task.eval_outputs(gen.model, to_device(inputs, gen.device))
            for row, i in zip(outputs.scores.float().cpu().numpy(), index):
                kept["scores"][i] = row
    return {"metrics": task.compute_metrics(kept, features, split), "model": source, "data": split.where,
            "samples": len(split), "precision": gen.precision,
            "zero_shot": {"model_kind": kind, "precision": gen.precision}}
