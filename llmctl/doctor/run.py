"""What the doctor's checks share (llmctl.core.doctor runs them): the Context every family reads,
the family per task, and the epoch figures of the plan.

Each task family adds its own checks (llmctl.doctor.<family>); a split the reader refuses becomes
an error finding (`read`) instead of stopping the doctor, unless the family's own checks already
found the problem in more detail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from llmctl.doctor.report import Report
from llmctl.errors import DataError

ROLES = ("train", "validation", "test")


@dataclass
class Context:
    """What every family's checks read: the task (labels fitted on train), the loaded splits, the
    training features, and the loader's refusals (role -> DataError)."""

    recipe: object
    task: object
    tokenizer: object
    specs: dict
    splits: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)
    train_features: object = None

    def guard(self, report: Report, role: str, check) -> None:
        """Run one split's checks. A DataError is the reader's refusal of the file, kept for that
        split, unless finetune's loader read the split fine: then only the doctor's second look
        failed (a file shape its checks do not know), which a warning says instead of hiding."""
        try:
            check()
        except DataError as exc:
            if role in self.splits:
                report.add("warning", "skipped", role, f"the doctor's checks could not read this split again "
                           f"({exc}); only what the loader reports is shown.")
            else:
                self.refused.setdefault(role, exc)


def family_of(task_name: str):
    from llmctl.doctor import causal_lm, classification, generic, multiple_choice, ner, qa, seq2seq

    return {"classification": classification, "ner": ner, "qa": qa, "causal-lm": causal_lm,
            "seq2seq": seq2seq, "multiple-choice": multiple_choice}.get(task_name, generic)


def processes() -> int:
    """Processes a launch would start: torchrun / accelerate launch set WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def epoch_figures(train_rows: int, cfg) -> dict:
    """Optimizer steps one epoch takes; train.batch_size is the global batch, split over the processes."""
    from llmctl.train.loop import plan_steps

    per_epoch, total = plan_steps(train_rows, cfg)
    return {"train_rows": train_rows, "steps_per_epoch": per_epoch, "total_steps": total,
            "batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "processes": processes(), "effective_batch_size": cfg.batch_size * cfg.gradient_accumulation_steps}
