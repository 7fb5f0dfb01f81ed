"""Scoring features with a model on every process (evaluation during training, `llmctl eval`,
the test split after training), and moving batches to the device (also `llmctl predict`)."""

from __future__ import annotations

from typing import Callable

from llmctl.errors import TrainingError
from llmctl.train.batching import eval_batches, shard


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class EvaluationStopped(Exception):
    """A signal arrived while evaluating during training; the loop saves and exits."""


def evaluate(task, model, tokenizer, accelerator, features, split, batch_size: int,
             should_stop: Callable[[], bool] | None = None) -> dict:
    """Score `features` with `model` on every process; returns metrics including `loss`."""
    return _score(task, model, tokenizer, accelerator, features, split, batch_size, should_stop, False)[0]


def evaluate_in_detail(task, model, tokenizer, accelerator, features, split, batch_size: int,
                       should_stop: Callable[[], bool] | None = None) -> tuple[dict, dict]:
    """(metrics, diagnostics): `evaluate`, plus the task's diagnostics of the same outputs
    (Task.diagnostics: per-class counts, per-entity scores) on the main process, {} elsewhere."""
    return _score(task, model, tokenizer, accelerator, features, split, batch_size, should_stop, True)


def evaluate_with_predictions(task, model, tokenizer, accelerator, features, split, batch_size: int) -> tuple:
    """(metrics, one row per example: task.format_predictions of the same outputs plus its
    "reference"), for `eval --save-predictions`; rows on the main process, [] elsewhere."""
    kept: dict = {}
    metrics = _score(task, model, tokenizer, accelerator, features, split, batch_size, None, False, kept)[0]
    if not accelerator.is_main_process:
        return metrics, []
    rows = task.format_predictions(kept, features, split)
    return metrics, [row | {"reference": ref} for row, ref in zip(rows, task.references(split))]


def _score(task, model, tokenizer, accelerator, features, split, batch_size: int,
           should_stop: Callable[[], bool] | None, diagnose: bool, kept: dict | None = None) -> tuple[dict, dict]:
    """Score `features` with `model` on every process.

    Each global batch is split across processes and the kept outputs are gathered with
    their example index, so repeated examples (topping up the last batch) are dropped
    by index and the metric sees each example exactly once, in dataset order.
    `should_stop` is asked before each batch (by every process alike); when it says so,
    EvaluationStopped is raised, so a long evaluation never delays a SIGTERM's checkpoint.
    """
    import numpy as np
    import torch

    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    kept: dict[str, list] = {} if kept is None else kept
    seen = np.zeros(len(features), dtype=bool)
    loss_sum, loss_count = 0.0, 0
    with torch.inference_mode():
        for batch_ids in eval_batches(features.lengths, batch_size):
            if should_stop is not None and should_stop():
                model.train()
                raise EvaluationStopped
            inputs = task.collate(features.rows(shard(batch_ids, rank, world)), tokenizer)
            index = inputs.pop("index").to(accelerator.device)
            inputs = to_device(inputs, accelerator.device)
            with accelerator.autocast():
                # Generating tasks (seq2seq) also generate here; the others run model(**inputs).
                outputs = task.eval_outputs(model, inputs)
            if getattr(outputs, "loss", None) is not None:
                loss = accelerator.gather(outputs.loss.detach().float().reshape(1) * len(index))
                loss_sum += float(loss.sum())
                loss_count += len(index) * world
            parts = task.outputs_to_keep(outputs, inputs)
            index = accelerator.gather(index).cpu().numpy()
            for name, tensor in parts.items():
                if tensor.ndim >= 2:
                    tensor = accelerator.pad_across_processes(tensor, dim=1)
                values = accelerator.gather(tensor.contiguous()).float().cpu().numpy()
                store = kept.setdefault(name, [None] * len(features))
                for row, example in zip(values, index):
                    if store[example] is None:
                        store[example] = row
            seen[index] = True
    model.train()
    if not seen.all():  # would mean a sharding bug; never silently score a subset
        raise TrainingError(f"Evaluation missed {int((~seen).sum())} examples.")
    metrics = task.compute_metrics(kept, features, split)
    if loss_count and "loss" not in metrics:  # tasks that can, compute an exact per-example loss
        metrics = {"loss": loss_sum / loss_count} | metrics
    diagnostics = task.diagnostics(kept, features, split) if diagnose and accelerator.is_main_process else {}
    return {k: float(v) for k, v in metrics.items()}, diagnostics
