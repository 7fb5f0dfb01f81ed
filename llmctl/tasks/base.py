"""The task contract: what every task provides to the shared loop, eval and predict.

The Hugging Face example scripts (run_glue, run_ner, run_qa) differ only in model head,
preprocessing, collation, post-processing and metrics; a Task holds exactly those.
llmctl.core drives a task like this (a task never drives itself):

    task = TASKS[recipe.task](recipe.data)                 # or Task.from_model(llmctl.json, config)
    train = task.load_split("train", recipe.data.train)    # read and check rows, no model yet
    task = task.with_labels(task.fit(train))               # a new task; the first one is unchanged
    task = task.for_model(model_config)                    # the same, unless the head depends on it
    features = task.featurize(train, tokenizer)            # Features: token columns + meta
    batch = task.collate(features.rows(ids), tokenizer)    # padded tensors + "index"
    # training batches: task.collate_for_training(rows, tokenizer, seed, epoch)
    # evaluation: eval_outputs -> outputs_to_keep -> compute_metrics(kept, features, split)
    # prediction: predict_split(rows) -> featurize -> ... -> format_predictions

Rules a new task follows:
- Stateless: nothing is assigned to `self` after `__init__(data_cfg, labels=None)`. What is
  learned from data comes back as a value: the label set from `fit` (a frozen `Labels`), and
  whatever later steps need from `featurize` (pad side, windows, label maps) in `Features.meta`
  (JSON-safe: it is cached with the features).
- Never print: a split or Features carries `notes` (a tuple of `Note`); the caller shows them.
- Rows: readers keep the first `row_limit(role)` rows (data.max_train_samples for training,
  max_eval_samples for the validation split evaluated during training and for `eval`, where
  core sets it from --max-samples) and never read or check the rest; a test split is read whole.
- Batches: declare `padding(tokenizer)`; the shared collator (llmctl.data.collate) pads the
  columns, builds the attention mask and adds each row's `index`.
- Register the class in TASKS (llmctl/tasks/__init__.py); the recipe's `task:` names it.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from llmctl.config.schema import DataConfig
from llmctl.data.collate import Padding, collate
from llmctl.data.features import Features  # what featurize returns
from llmctl.events import Note  # noqa: F401  (what tasks tell the user; part of the task contract)

__all__ = ["DataConfig", "Features", "Labels", "Note", "Padding", "Task"]


@dataclass(frozen=True)
class Labels:
    """What a task learned about its targets: class names in id order, or a regression flag.
    Empty (the default) for tasks without labels, or while nothing is known yet."""

    names: tuple[str, ...] = ()
    regression: bool = False

    def __bool__(self) -> bool:
        return bool(self.names) or self.regression


class Task(ABC):
    name: ClassVar[str]
    data_config: ClassVar[type[DataConfig]]
    auto_model: ClassVar[str]  # name of the transformers Auto class for the head
    # True when the training features depend only on the data file, data settings and tokenizer,
    # so they may come from the feature cache without featurize running (llmctl.data.prepare).
    cacheable_features: ClassVar[bool] = False
    # What a `distill:` teacher's outputs are matched on (llmctl.train.distill): "sequence" (one
    # logits row per example: a classification head) or "tokens" (a causal LM's positions whose
    # next token is learned); None: distillation is not offered (config.schema.DISTILL_TASKS).
    distill_targets: ClassVar[str | None] = None

    def __init__(self, data_cfg: DataConfig, labels: Labels | None = None):
        self.data_cfg = data_cfg
        self.labels = labels if labels is not None else Labels()

    @classmethod
    def for_recipe(cls, recipe) -> "Task":
        """The task a recipe trains (finetune, doctor). Tasks that read a section besides `data:`
        (preference: the `preference:` section and the starting model) override it."""
        return cls(recipe.data)

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "Task":
        """Rebuild the task, labels included, from a saved model's llmctl.json (`meta`) and config.
        Here for tasks without labels: the data section saved with the model is all they need."""
        return cls(cls.data_config.model_validate(meta["data"]))

    def with_labels(self, labels: Labels) -> "Task":
        """This task with `labels` (what `fit` returned); `self` is left as it is."""
        return self if labels == self.labels else self._replaced(labels=labels)

    def with_data(self, data_cfg: DataConfig) -> "Task":
        """This task reading data as `data_cfg` says (eval --data / --max-samples); `self` is unchanged."""
        return self._replaced(data_cfg=data_cfg)

    def _replaced(self, **attributes) -> "Task":
        new = copy.copy(self)
        vars(new).update(attributes)
        return new

    # -- data, before any model is loaded ---------------------------------------------
    @abstractmethod
    def load_split(self, role: str, spec: str, labelled: bool = True) -> Any:
        """Read and check one split (role: train / validation / test / eval). Labels are checked
        against `self.labels` when they are known; a split has `where` (for messages), `len()`
        and `notes`."""

    def fit(self, train_split) -> Labels:
        """The label set the training split implies (checking every training label against it),
        or the one given in the recipe. Tasks without labels return an empty Labels."""
        return self.labels

    def row_limit(self, role: str) -> int | None:
        """The one rule for data.max_train_samples / max_eval_samples: how many rows to keep.
        max_eval_samples cuts the validation split evaluated during training (and `eval`, whose
        --max-samples sets it); the test split, scored once, and prediction inputs are read whole."""
        if role == "train":
            return self.data_cfg.max_train_samples
        return self.data_cfg.max_eval_samples if role in ("validation", "eval") else None

    # -- the model -------------------------------------------------------------------
    @abstractmethod
    def model_kwargs(self) -> dict:
        """Config overrides for `from_pretrained` (num_labels, id2label, ...)."""

    def tokenizer_kwargs(self) -> dict:
        return {}

    def corpus(self, split):
        """The split's text, a row at a time, to train a tokenizer on (model.tokenizer.train): an
        iterator, so a streamed file is never whole in memory. Tasks that pre-train from plain text
        (causal-lm, masked-lm, denoising) give it; the others cannot train a tokenizer."""
        from llmctl.errors import RecipeError

        raise RecipeError(f"model.tokenizer.train: task {self.name} cannot train a tokenizer on its data.",
                          "Give model.tokenizer a tokenizer directory, or pre-train with causal-lm, masked-lm or denoising.")

    def feature_settings(self) -> dict:
        """What, besides the data section and the tokenizer, the training features depend on (the
        feature cache's key): multiple-choice's model family. {} for most tasks."""
        return {}

    def for_model(self, model_config) -> "Task":
        """This task for the model whose config `finetune` has read (eval and predict build the task
        with `from_model`, which sees the config too). A task whose head depends on the architecture
        (multiple-choice: encoder, decoder or T5) returns a new task; the others return `self`."""
        return self

    def check_model(self, model_cfg) -> tuple[Note, ...] | None:
        """Refuse, before any weights load, a checkpoint whose architecture cannot do this task:
        by default one whose model type has no `auto_model` head in transformers. May return
        notes about the checkpoint for the caller to show (a head it lacks, started at random)."""
        from llmctl.models.load import check_head

        check_head(self.auto_model, model_cfg)
        return ()

    # -- features and batches ----------------------------------------------------------
    @abstractmethod
    def featurize(self, split, tokenizer, progress=None):
        """Tokenize a split into `llmctl.data.features.Features`; tasks that read their split in
        chunks call `progress(rows_done, rows_total)` after each."""

    def padding(self, tokenizer) -> Padding:
        """Which feature columns a batch holds and what pads them (see llmctl.data.collate)."""
        raise NotImplementedError(f"task {self.name} declares no padding; define padding() or collate()")

    def collate(self, rows: list[dict], tokenizer) -> dict:
        """Pad a list of feature rows into model inputs (tensors) plus `index`."""
        return collate(rows, self.padding(tokenizer))

    def collate_for_training(self, rows: list[dict], tokenizer, seed: int, epoch: int) -> dict:
        """A training batch. Tasks whose inputs are drawn at random (masked-LM masks) draw them
        here from (seed, epoch, each row's index) alone, so a resumed run and every process see
        the same inputs; the others batch as `collate` does."""
        return self.collate(rows, tokenizer)

    def training_loss(self, model, inputs: dict):
        """(loss, stats) of one training batch: the loss to back-propagate (the model's own, its head
        computes it from `labels`; a task whose objective is outside the model, contrastive embedding
        or preference losses, computes it here from the model's outputs) and, for the log line and
        the trackers, named floats that the loop averages over the batches of each logging window
        ({} for most tasks; preference: TRL's rewards/... and logps/...)."""
        return model(**inputs).loss, {}

    def reference_columns(self, features, model, accelerator, use_cache: bool = True, trained: bool = False):
        """`features` plus columns the starting model computes once, before the first step (DPO's
        reference log-probabilities), with only the notes of this step (the features' own were
        shown when they were made); the same features, no notes, for tasks that need none.
        `trained`: `model` is the fine-tuned one (eval), not the start."""
        return replace(features, notes=())

    # -- evaluation --------------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        """The outputs `outputs_to_keep` reads, for evaluation and prediction; tasks that
        generate text override it (a teacher-forced forward pass plus `generate`)."""
        return model(**inputs)

    @abstractmethod
    def outputs_to_keep(self, outputs, batch) -> dict:
        """The tensors (first dim = batch) needed to score a batch, e.g. {"logits": ...}."""

    @abstractmethod
    def compute_metrics(self, kept: dict, features, split) -> dict[str, float]:
        """Score the whole split; `kept` arrays are ordered like `features`."""

    def diagnostics(self, kept: dict, features, split) -> dict:
        """What the metrics alone do not show, from the same outputs as `compute_metrics`: JSON-safe,
        written to the run's diagnostics.json and drawn by llmctl.runs.plots (a confusion matrix,
        per-entity scores, ...). {} for tasks that have nothing to add."""
        return {}

    @abstractmethod
    def default_metric(self) -> str:
        """Metric used to pick the best model when the recipe does not say."""

    def metric_names(self) -> list[str] | None:
        """Every metric `compute_metrics` can report once the labels are known, so that gates and
        train.metric_for_best are checked before any model loads; None: not known in advance."""
        return None

    # -- remembering the task next to the model ---------------------------------------
    def metadata(self) -> dict:
        data = self.data_cfg.model_dump(mode="json")
        # Absolute paths, so `llmctl eval RUN_DIR` finds the validation file from any directory.
        for key in ("train", "validation", "test"):
            if data.get(key) and Path(data[key]).expanduser().is_file():
                data[key] = str(Path(data[key]).expanduser().resolve())
        return {"task": self.name, "data": data}

    def model_files(self, model_config) -> dict[str, str]:
        """Extra files (relative path -> text) saved beside the weights, e.g. the sentence-transformers
        modules of an embedding model; {} for most tasks."""
        return {}

    # -- prediction -------------------------------------------------------------------
    def cut_inputs(self, split, tokenizer) -> tuple[object, int, int]:
        """(split, inputs cut, characters kept): inputs cut to what max_length tokens can use,
        before tokenizing them. By default nothing is cut: tasks that window long inputs (QA,
        NER) or read a prompt's end (causal LM) need all of it."""
        return split, 0, 0

    @abstractmethod
    def predict_split(self, rows: list[dict], where: str):
        """Turn user input rows (dicts) into a split `featurize` accepts."""

    @abstractmethod
    def format_predictions(self, kept: dict, features, split) -> list[dict]:
        """One output dict per input row, in input order."""

    def references(self, split) -> list | None:
        """Each evaluated example's reference, in split order, for `eval --save-predictions` (rows
        of format_predictions on the evaluation outputs plus "reference"); None: this task's
        evaluation outputs are not predictions (the option is refused before the model loads)."""
        return None
