"""The one training loop, shared by every task. It yields events (llmctl.events) and never prints.

    for event in train_loop(setup):      # llmctl.console renders these
        ...

`train_loop` reads like accelerate's examples/nlp_example.py: one optimizer step at a time,
each followed by maybe evaluating, maybe checkpointing and maybe stopping; `Training` holds
those steps and the state a checkpoint saves. Per optimizer step: forward/backward over
`gradient_accumulation_steps` batches (gradients synced only on the last), clip, step,
schedule. Everything else happens at step boundaries, so a checkpoint always describes a
clean point a resumed run can continue from bit-for-bit.
"""

from __future__ import annotations

import contextlib
import gc
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from llmctl import faults
from llmctl.data.store import release_features
from llmctl.errors import Interrupted, TrainingError
from llmctl.events import Checkpointed, Evaluated, Progress, Started, Stopped
from llmctl.metrics import lower_is_better
from llmctl.train import checkpoint as ckpt
from llmctl.train.batching import epoch_batches, shard
from llmctl.train.evaluate import EvaluationStopped, evaluate_in_detail, to_device
from llmctl.train.optim import clip_gradients
from llmctl.train.sharding import fsdp_version


@dataclass
class LoopSetup:
    """What the loop needs, built by llmctl.core.finetune."""
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
    save_best: Callable[[dict], None]  # writes the best model (called on every process: FSDP gathers)
    precision: str = "fp32"
    resume_from: Path | None = None
    fingerprint: dict = field(default_factory=dict)  # stored in checkpoints, checked on resume
    distiller: Any | None = None  # llmctl.train.distill.Distiller: the loss mixes in a teacher's KL


def plan_steps(num_examples: int, cfg) -> tuple[int, int]:
    """(steps_per_epoch, total_steps) for a dataset size and train config."""
    batches = math.ceil(num_examples / cfg.batch_size)
    per_epoch = math.ceil(batches / cfg.gradient_accumulation_steps)
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    return per_epoch, total


def train_loop(s: LoopSetup) -> Iterator[Any]:
    run = Training(s)
    yield run.resume()  # Started; the state of s.resume_from when given
    run.begin()
    with StopFlag() as stop:
        yield from run.finish_pending_eval(stop)
        while run.more_steps():
            for group in run.steps_left_in_epoch():
                yield run.optimizer_step(group)
                yield from run.maybe_evaluate(stop)
                interrupted = stop.reason(s.accelerator)  # asked by every process at every step
                yield from run.maybe_checkpoint(force=interrupted is not None)
                if run.maybe_stop(interrupted):
                    break
    yield run.finish()


class Boundary(NamedTuple):
    """Where the last optimizer step left the run."""
    step: int
    epoch: float  # fractional, for events and logs
    end_of_epoch: bool
    final: bool


class Training:
    def __init__(self, s: LoopSetup):
        self.s, self.cfg, self.acc = s, s.cfg, s.accelerator
        self.metric_name = s.cfg.metric_for_best or s.task.default_metric()
        greater = s.cfg.greater_is_better
        self.greater = greater if greater is not None else not lower_is_better(self.metric_name)
        # Everything a checkpoint saves (loop.json) and a resumed run restores.
        self.state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "best_metric": None, "best_step": None,
                      "best_metrics": {}, "bad_evals": 0, "samples": 0, "runtime_s": 0.0,
                      "fingerprint": s.fingerprint}
        self.reason = "finished"
        self.at: Boundary | None = None
        self.groups_per_epoch = 0
        self.window = _Window()
        self.sharded = fsdp_version(s.accelerator) is not None

    # -- start and end -------------------------------------------------------------------
    def resume(self) -> Started:
        s, resumed = self.s, None
        if s.resume_from is not None:
            self.state |= ckpt.load_checkpoint(s.resume_from, self.acc, s.model, s.optimizer, s.scheduler)
            self.state["fingerprint"] = s.fingerprint  # a forced resume records what it continued with
            resumed = str(s.resume_from)
        return Started(s.total_steps, s.steps_per_epoch, len(s.train_features), self.acc.num_processes,
                       s.precision, resumed)

    def begin(self) -> None:
        # Move everything alive now (modules, tokenizer, features, imported libraries) out of
        # the garbage collector's view: otherwise each full collection, triggered by the
        # thousands of small objects a step allocates, walks millions of them (~8% of a step).
        gc.collect()
        gc.freeze()
        release_features(self.s.train_features)  # what setup read whole (lengths, offsets)
        self.s.model.train()

    def more_steps(self) -> bool:
        return self.state["step"] < self.s.total_steps and self.reason == "finished"

    def finish(self) -> Stopped:
        s, state = self.s, self.state
        if s.eval_features is None:
            s.save_best({"step": state["step"]})  # no validation data: the last model is the model
        self.acc.wait_for_everyone()
        best = state["best_metrics"] | ({"best_step": state["best_step"]} if state["best_step"] else {})
        return Stopped(state["step"], self.reason, state["samples"], state["runtime_s"], best,
                       state.get("skipped_steps", 0))

    # -- one optimizer step --------------------------------------------------------------
    def steps_left_in_epoch(self) -> list[list]:
        """The optimizer steps (groups of global batches) left in the current epoch."""
        cfg, state = self.cfg, self.state
        batches = epoch_batches(self.s.train_features.lengths, cfg.batch_size, cfg.seed, state["epoch"],
                                cfg.group_by_length)
        accum = cfg.gradient_accumulation_steps
        groups = [batches[i : i + accum] for i in range(0, len(batches), accum)]
        self.groups_per_epoch = len(groups)
        return groups[state["step_in_epoch"] :]

    def optimizer_step(self, group: list) -> Progress:
        s, acc, state = self.s, self.acc, self.state
        started = time.perf_counter()
        total_examples = sum(len(b) for b in group)
        indices = self._accumulate_gradients(group, total_examples)
        release_features(s.train_features)  # the step's rows are tensors now; their file pages can go
        if self.cfg.max_grad_norm and self.sharded:
            acc.clip_grad_norm_(s.model.parameters(), self.cfg.max_grad_norm)  # the norm over every shard
        elif self.cfg.max_grad_norm:
            clip_gradients(acc, s.model.parameters(), self.cfg.max_grad_norm)
        scale = acc.scaler.get_scale() if acc.scaler is not None else None
        s.optimizer.step()
        # fp16 overflow: the step is skipped and must not advance the schedule. accelerate's
        # flag misses skips made inside fused AdamW itself; a lowered loss scale does not.
        if acc.optimizer_step_was_skipped or (scale is not None and acc.scaler.get_scale() < scale):
            state["skipped_steps"] = state.get("skipped_steps", 0) + 1
        else:
            s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        state["step"] += 1
        state["step_in_epoch"] += 1
        state["samples"] += total_examples
        state["runtime_s"] += elapsed
        self.window.time += elapsed
        self.window.samples += total_examples
        step = state["step"]
        faults.hook("step", rank=acc.process_index, epoch=state["epoch"], step=step, indices=indices)
        end_of_epoch = state["step_in_epoch"] == self.groups_per_epoch
        self.at = Boundary(step, state["epoch"] + state["step_in_epoch"] / self.groups_per_epoch, end_of_epoch,
                           step >= s.total_steps)
        if end_of_epoch:  # before any checkpoint of this step, which must resume in the next epoch
            state["epoch"] += 1
            state["step_in_epoch"] = 0
        return self._progress()

    def _accumulate_gradients(self, group: list, total_examples: int) -> list:
        """Forward and backward over the step's global batches; returns their example indices."""
        import torch

        s, acc, state = self.s, self.acc, self.state
        rank, world = acc.process_index, acc.num_processes
        indices = []
        for micro, batch_ids in enumerate(group):
            rows = s.train_features.rows(shard(batch_ids, rank, world))
            inputs = s.task.collate_for_training(rows, s.tokenizer, self.cfg.seed, state["epoch"])
            indices.append(inputs.pop("index"))
            inputs = to_device(inputs, acc.device)
            last = micro == len(group) - 1
            with contextlib.nullcontext() if last or world == 1 else acc.no_sync(s.model):
                loss, stats = (s.task.training_loss(s.model, inputs) if s.distiller is None
                               else (s.distiller.loss(s.model, inputs, indices[-1]), {}))
                if not torch.isfinite(loss.detach()):
                    raise TrainingError(
                        f"Loss became {float(loss)} at step {state['step'] + 1} (epoch {state['epoch'] + 1}).",
                        "Lower train.learning_rate, use precision fp32/bf16 (T5 overflows in fp16), "
                        "or resume from the last checkpoint with --resume.",
                    )
                # Weight each micro-batch by its share of the step's examples.
                acc.backward(loss * (len(batch_ids) / total_examples))
            self.window.loss += float(loss.detach())
            self.window.batches += 1
            for name, value in stats.items():
                self.window.stats[name] = self.window.stats.get(name, 0.0) + value
        return indices

    def _progress(self) -> Progress:
        """Every step feeds a progress bar; every `logging_steps` also makes a log line and
        starts a new averaging window."""
        s, w, step = self.s, self.window, self.state["step"]
        log = step % self.cfg.logging_steps == 0 or step == s.total_steps
        event = Progress(step, s.total_steps, self.at.epoch, w.loss / max(1, w.batches),
                         s.scheduler.get_last_lr()[0], w.samples / w.time if w.time else 0.0,
                         self.state["runtime_s"] / step * (s.total_steps - step), log,
                         {k: v / max(1, w.batches) for k, v in w.stats.items()})
        if log:
            self.window = _Window()
        return event

    # -- at the step boundary ------------------------------------------------------------
    def maybe_evaluate(self, stop: StopFlag) -> Iterator[Evaluated]:
        cfg, at = self.cfg, self.at
        if self.s.eval_features is None:
            return
        if cfg.eval_every == "epoch":
            due = at.end_of_epoch or at.final
        else:
            due = at.step % cfg.eval_every == 0 or at.final
        if due:
            yield from self._evaluate_at(at.step, at.epoch, stop)

    def finish_pending_eval(self, stop: StopFlag) -> Iterator[Evaluated]:
        """A run stopped while evaluating redoes that evaluation before training on."""
        pending = self.state.get("pending_eval")
        if not pending:
            return
        yield from self._evaluate_at(pending["step"], pending["epoch"], stop)
        if self.state.get("pending_eval"):  # stopped again: the checkpoint still says so
            raise Interrupted(f"Stopped while evaluating at step {self.state['step']}; nothing new to save.",
                              "Continue with the same command plus --resume.")

    def _evaluate_at(self, step: int, epoch: float, stop: StopFlag) -> Iterator[Evaluated]:
        """Evaluate, keep the best model, count toward early stopping. A signal during the
        evaluation leaves it pending in the state, for the resumed run to redo first."""
        s, acc, state = self.s, self.acc, self.state

        def should_stop() -> bool:
            faults.hook("eval", rank=acc.process_index, step=step)
            return stop.reason(acc) is not None

        try:
            metrics, diagnostics = evaluate_in_detail(s.task, s.model, s.tokenizer, acc, s.eval_features,
                                                      s.eval_split, self.cfg.eval_batch_size, should_stop=should_stop)
        except EvaluationStopped:
            state["pending_eval"] = {"step": step, "epoch": epoch}
            return
        finally:
            release_features(s.eval_features)  # read whole; a pre-training validation text can be large
        state.pop("pending_eval", None)
        if self.metric_name not in metrics:
            raise TrainingError(
                f"train.metric_for_best '{self.metric_name}' is not reported; metrics are: {', '.join(metrics)}.",
                "Set train.metric_for_best to one of them.",
            )
        value, best = metrics[self.metric_name], state["best_metric"]
        is_best = best is None or (value > best if self.greater else value < best)
        if is_best:
            state.update(best_metric=value, best_step=step, best_metrics=metrics, bad_evals=0)
            s.save_best({"step": step, "epoch": epoch, **metrics})
            acc.wait_for_everyone()
        else:
            state["bad_evals"] += 1
        patience = self.cfg.early_stopping_patience
        if patience and state["bad_evals"] >= patience:
            self.reason = "early_stopping"
        yield Evaluated(step, epoch, metrics, is_best, diagnostics)

    def maybe_checkpoint(self, force: bool) -> Iterator[Checkpointed]:
        """Save on schedule, when stopping (signalled, early) and after the last step: a run
        continued with more steps (--force-resume --max-steps N) starts from where it ended."""
        s, cfg, at = self.s, self.cfg, self.at
        if cfg.save_every == "epoch":
            due = at.end_of_epoch
        else:
            due = at.step % cfg.save_every == 0
        if not (due or force or at.final or self.reason != "finished"):
            return
        path = ckpt.save_checkpoint(s.checkpoint_dir, at.step, self.acc, s.model, s.optimizer, s.scheduler,
                                    self.state)
        if self.acc.is_main_process:
            ckpt.prune_checkpoints(s.checkpoint_dir, cfg.keep_checkpoints)
        yield Checkpointed(at.step, str(path))

    def maybe_stop(self, interrupted: str | None) -> bool:
        """True after the last step or early stopping; a signal (state saved) ends the command."""
        if interrupted:
            during = " while evaluating" if self.state.get("pending_eval") else ""
            raise Interrupted(f"Stopped by {interrupted} at step {self.at.step}{during}; state saved.",
                              "Continue with the same command plus --resume.")
        return self.at.final or self.reason != "finished"


@dataclass
class _Window:
    """Loss and throughput since the last log line."""
    loss: float = 0.0
    batches: int = 0
    time: float = 0.0
    samples: int = 0
    stats: dict = field(default_factory=dict)  # sums of the task's training stats


class StopFlag:
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

    def reason(self, acc) -> str | None:
        """What stopped the run, on every process when any was signalled (a signal may reach
        one worker only, or reach them at different steps, and all must stop at the same step
        or the next collective would hang); None to carry on. A collective: every process
        must ask at the same points."""
        flag = self.signal is not None
        if acc.num_processes > 1:
            import torch

            flag = bool(acc.reduce(torch.tensor([int(flag)], device=acc.device), reduction="sum").item())
        if not flag:
            return None
        return f"signal {signal.Signals(self.signal).name}" if self.signal else "a signal to another process"
