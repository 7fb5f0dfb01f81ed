"""The one training loop, shared by every task. It yields events and never prints.

    for event in train_loop(setup):      # llmctl.console renders these
        ...

Per optimizer step: forward/backward over `gradient_accumulation_steps` batches
(gradients synced only on the last), clip, step, schedule. Evaluation, best-model
saving, checkpoints and early stopping happen at step boundaries, so a checkpoint
always describes a clean point a resumed run can continue from bit-for-bit.
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from llmctl.errors import Interrupted, TrainingError
from llmctl.metrics import lower_is_better
from llmctl.train import checkpoint as ckpt, faults
from llmctl.train.batching import epoch_batches, eval_batches, shard
from llmctl.train.optim import clip_gradients


# -- events -----------------------------------------------------------------------------
@dataclass
class Started:
    total_steps: int
    steps_per_epoch: int
    num_examples: int
    num_processes: int
    precision: str
    resumed_from: str | None = None


@dataclass
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    samples_per_second: float
    eta_s: float
    log: bool = True  # False: only a progress-bar update, no log line


@dataclass
class Evaluated:
    step: int
    epoch: float
    metrics: dict
    is_best: bool


@dataclass
class Checkpointed:
    step: int
    path: str


@dataclass
class Stopped:
    step: int
    reason: str  # "finished" | "early_stopping"
    train_samples: int
    train_runtime_s: float
    best: dict = field(default_factory=dict)
    skipped_steps: int = 0  # fp16 overflow steps (weights and schedule left unchanged)


# -- what the loop needs ----------------------------------------------------------------
@dataclass
class LoopSetup:
    task: Any
    tokenizer: Any
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    train_features: Any
    eval_features: Any | None
    eval_split: Any | None
    cfg: Any  # TrainConfig
    total_steps: int
    steps_per_epoch: int
    checkpoint_dir: Path
    save_best: Callable[[dict], None]  # writes the best model (called on the main process)
    precision: str = "fp32"
    resume_from: Path | None = None
    fingerprint: dict = field(default_factory=dict)  # stored in checkpoints, checked on resume


def plan_steps(num_examples: int, cfg) -> tuple[int, int]:
    """(steps_per_epoch, total_steps) for a dataset size and train config."""
    batches = math.ceil(num_examples / cfg.batch_size)
    per_epoch = math.ceil(batches / cfg.gradient_accumulation_steps)
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    return per_epoch, total


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class EvaluationStopped(Exception):
    """A signal arrived while evaluating during training; the loop saves and exits."""


def evaluate(task, model, tokenizer, accelerator, features, split, batch_size: int,
             should_stop: Callable[[], bool] | None = None) -> dict:
    """Score `features` with `model` on every process; returns metrics including `loss`.

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
    kept: dict[str, list] = {}
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
    return {k: float(v) for k, v in metrics.items()}


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary."""

    def __init__(self):
        self.signal: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a worker thread)
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: the user insists
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _any_process(acc, flag: bool) -> bool:
    """True on every process when it is true on any: a signal may reach one worker only (or
    reach them at different steps), and all must stop at the same step or the next
    collective would hang."""
    if acc.num_processes == 1:
        return flag
    import torch

    return bool(acc.reduce(torch.tensor([int(flag)], device=acc.device), reduction="sum").item())


def _better(value: float, best: float | None, greater: bool) -> bool:
    return best is None or (value > best if greater else value < best)


def train_loop(s: LoopSetup) -> Iterator[Any]:
    import torch

    cfg, acc, model = s.cfg, s.accelerator, s.model
    rank, world = acc.process_index, acc.num_processes
    metric_name = cfg.metric_for_best or s.task.default_metric()
    greater = cfg.greater_is_better if cfg.greater_is_better is not None else not lower_is_better(metric_name)
    state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "best_metric": None, "best_step": None,
             "best_metrics": {}, "bad_evals": 0, "samples": 0, "runtime_s": 0.0, "fingerprint": s.fingerprint}
    resumed = None
    if s.resume_from is not None:
        state |= ckpt.load_checkpoint(s.resume_from, acc, model, s.optimizer, s.scheduler)
        state["fingerprint"] = s.fingerprint  # a forced resume records what it continued with
        resumed = str(s.resume_from)
    yield Started(s.total_steps, s.steps_per_epoch, len(s.train_features), world, s.precision, resumed)

    # Move everything alive now (modules, tokenizer, features, imported libraries) out of
    # the garbage collector's view: otherwise each full collection, triggered by the
    # thousands of small objects a step allocates, walks millions of them (~8% of a step).
    gc.collect()
    gc.freeze()
    model.train()
    window_loss, window_batches, window_time, window_samples = 0.0, 0, 0.0, 0
    reason = "finished"

    def evaluate_at(step: int, epoch_float: float) -> Iterator[Evaluated]:
        """Evaluate, keep the best model, count toward early stopping. A signal during the
        evaluation leaves it pending in the state, for the resumed run to redo first."""
        try:
            metrics = evaluate(s.task, model, s.tokenizer, acc, s.eval_features, s.eval_split, cfg.eval_batch_size,
                               should_stop=lambda: faults.during_eval(rank, step) or _any_process(acc, stop.signal is not None))
        except EvaluationStopped:
            state["pending_eval"] = {"step": step, "epoch": epoch_float}
            return
        state.pop("pending_eval", None)
        if metric_name not in metrics:
            raise TrainingError(
                f"train.metric_for_best '{metric_name}' is not reported; metrics are: {', '.join(metrics)}.",
                "Set train.metric_for_best to one of them.",
            )
        is_best = _better(metrics[metric_name], state["best_metric"], greater)
        if is_best:
            state.update(best_metric=metrics[metric_name], best_step=step, best_metrics=metrics, bad_evals=0)
            if acc.is_main_process:
                s.save_best({"step": step, "epoch": epoch_float, **metrics})
            acc.wait_for_everyone()
        else:
            state["bad_evals"] += 1
        yield Evaluated(step, epoch_float, metrics, is_best)

    def early_stop() -> bool:
        return bool(cfg.early_stopping_patience) and state["bad_evals"] >= cfg.early_stopping_patience

    with _StopFlag() as stop:
        if state.get("pending_eval"):  # the interrupted run was stopped while evaluating
            yield from evaluate_at(state["pending_eval"]["step"], state["pending_eval"]["epoch"])
            if state.get("pending_eval"):  # stopped again: the checkpoint still says so
                raise Interrupted(f"Stopped while evaluating at step {state['step']}; nothing new to save.",
                                  "Continue with the same command plus --resume.")
            if early_stop():
                reason = "early_stopping"
        while state["step"] < s.total_steps and reason == "finished":
            batches = epoch_batches(s.train_features.lengths, cfg.batch_size, cfg.seed, state["epoch"], cfg.group_by_length)
            accum = cfg.gradient_accumulation_steps
            groups = [batches[i : i + accum] for i in range(0, len(batches), accum)]
            for group in groups[state["step_in_epoch"] :]:
                started = time.perf_counter()
                total_examples = sum(len(b) for b in group)
                for micro, batch_ids in enumerate(group):
                    inputs = s.task.collate(s.train_features.rows(shard(batch_ids, rank, world)), s.tokenizer)
                    faults.note_examples(inputs.pop("index"))
                    inputs = to_device(inputs, acc.device)
                    last = micro == len(group) - 1
                    sync = contextlib.nullcontext() if last or world == 1 else acc.no_sync(model)
                    with sync:
                        outputs = model(**inputs)
                        loss = outputs.loss
                        if not torch.isfinite(loss.detach()):
                            raise TrainingError(
                                f"Loss became {float(loss)} at step {state['step'] + 1} (epoch {state['epoch'] + 1}).",
                                "Lower train.learning_rate, use precision fp32/bf16 (T5 overflows in fp16), "
                                "or resume from the last checkpoint with --resume.",
                            )
                        # Weight each micro-batch by its share of the step's examples.
                        acc.backward(loss * (len(batch_ids) / total_examples))
                    window_loss += float(loss.detach())
                    window_batches += 1
                if cfg.max_grad_norm:
                    clip_gradients(acc, model.parameters(), cfg.max_grad_norm)
                scale = acc.scaler.get_scale() if acc.scaler is not None else None
                s.optimizer.step()
                # fp16 overflow: the step is skipped and must not advance the schedule. accelerate's
                # flag misses skips made inside fused AdamW itself; a lowered loss scale does not.
                skipped = acc.optimizer_step_was_skipped or (scale is not None and acc.scaler.get_scale() < scale)
                if not skipped:
                    s.scheduler.step()
                else:
                    state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                s.optimizer.zero_grad(set_to_none=True)
                elapsed = time.perf_counter() - started
                state["step"] += 1
                state["step_in_epoch"] += 1
                state["samples"] += total_examples
                state["runtime_s"] += elapsed
                window_time += elapsed
                window_samples += total_examples
                step = state["step"]
                faults.after_step(rank, state["epoch"], step)  # test hooks: trace examples, pause
                epoch_float = state["epoch"] + state["step_in_epoch"] / len(groups)

                # Every step feeds a progress bar; every `logging_steps` also makes a log line
                # and starts a new averaging window.
                log = step % cfg.logging_steps == 0 or step == s.total_steps
                rate = window_samples / window_time if window_time else 0.0
                yield Progress(step, s.total_steps, epoch_float, window_loss / max(1, window_batches),
                               s.scheduler.get_last_lr()[0], rate,
                               state["runtime_s"] / step * (s.total_steps - step), log)
                if log:
                    window_loss, window_batches, window_time, window_samples = 0.0, 0, 0.0, 0

                end_of_epoch = state["step_in_epoch"] == len(groups)
                final = step >= s.total_steps
                do_eval = s.eval_features is not None and (
                    (cfg.eval_every == "epoch" and (end_of_epoch or final))
                    or (cfg.eval_every != "epoch" and (step % cfg.eval_every == 0 or final))
                )
                if do_eval:
                    yield from evaluate_at(step, epoch_float)
                    if early_stop():
                        reason = "early_stopping"
                if end_of_epoch:
                    state["epoch"] += 1
                    state["step_in_epoch"] = 0
                save_due = (cfg.save_every == "epoch" and end_of_epoch) or (
                    cfg.save_every != "epoch" and step % cfg.save_every == 0
                )
                interrupted = _any_process(acc, stop.signal is not None)
                # The last step is saved too (finished or stopped early): a run continued with more
                # steps (--force-resume --max-steps N) starts from where it ended, not an epoch back.
                if save_due or interrupted or final or reason != "finished":
                    path = ckpt.save_checkpoint(s.checkpoint_dir, step, acc, model, s.optimizer, s.scheduler, state)
                    if acc.is_main_process:
                        ckpt.prune_checkpoints(s.checkpoint_dir, cfg.keep_checkpoints)
                    yield Checkpointed(step, str(path))
                if interrupted:
                    # Another process may have been the one signalled.
                    name = f"signal {signal.Signals(stop.signal).name}" if stop.signal else "a signal to another process"
                    during = " while evaluating" if state.get("pending_eval") else ""
                    raise Interrupted(
                        f"Stopped by {name} at step {step}{during}; state saved.",
                        "Continue with the same command plus --resume.",
                    )
                if final or reason != "finished":
                    break

    if s.eval_features is None and acc.is_main_process:
        s.save_best({"step": state["step"]})  # no validation data: the last model is the model
    acc.wait_for_everyone()
    yield Stopped(state["step"], reason, state["samples"], state["runtime_s"],
                  state["best_metrics"] | ({"best_step": state["best_step"]} if state["best_step"] else {}),
                  state.get("skipped_steps", 0))
