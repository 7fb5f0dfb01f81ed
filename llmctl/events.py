"""What `llmctl finetune` reports while it runs: the training loop yields these, the core
adds Finished, and llmctl.console renders them. Plain data, so both sides import it alone."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field


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
    # the task's own training stats (Task.training_loss), averaged over the window: preference's rewards/...
    metrics: dict = field(default_factory=dict)


@dataclass
class Evaluated:
    step: int
    epoch: float
    metrics: dict
    is_best: bool
    # Task.diagnostics of this evaluation (confusion matrix, per-entity scores), main process only
    diagnostics: dict = field(default_factory=dict)


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


@dataclass
class Finished:
    """The last event: what metrics.json holds and `--json` prints."""
    result: dict


@dataclass(frozen=True)
class Note:
    """One line for the user (repairs made to the data, sentences split into windows, ...)."""

    text: str
    warning: bool = False


def log_notes(given, log: logging.Logger):
    """Pass the notes riding on `given` (a split or Features) to `log` and return `given`: the
    parts below the commands never print, and llmctl.console renders the `llmctl` loggers
    (route_logs) as it renders its own notes and warnings."""
    for item in getattr(given, "notes", ()):
        (log.warning if item.warning else log.info)(item.text)
    return given
