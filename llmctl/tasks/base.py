"""What every task provides to the shared loop, eval and predict.

The Hugging Face example scripts (run_glue, run_ner, run_qa) differ only in model head,
preprocessing, collation, post-processing and metrics; a Task holds exactly those.
A task object is built from the recipe's `data` section (training) or from the
metadata saved next to a model (`llmctl.json`, for eval and predict).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from llmctl.config.schema import DataConfig


class Task(ABC):
    name: ClassVar[str]
    data_config: ClassVar[type[DataConfig]]
    auto_model: ClassVar[str]  # name of the transformers Auto class for the head
    # True when featurize keeps nothing on `self`, so its training features may come from the
    # feature cache without featurize running (llmctl.data.prepare).
    cacheable_features: ClassVar[bool] = False

    def __init__(self, data_cfg: DataConfig):
        self.data_cfg = data_cfg

    @classmethod
    @abstractmethod
    def from_model(cls, meta: dict, model_config) -> "Task":
        """Rebuild the task from a saved model's llmctl.json (`meta`) and its transformers config."""

    # -- data, before any model is loaded ---------------------------------------------
    @abstractmethod
    def load_split(self, role: str, spec: str, labelled: bool = True) -> Any:
        """Read and validate one split (role: train / validation / test / eval)."""

    def fit_labels(self, train_split) -> None:
        """Learn the label set from training data (no-op for tasks without labels)."""

    # -- the model -------------------------------------------------------------------
    @abstractmethod
    def model_kwargs(self) -> dict:
        """Config overrides for `from_pretrained` (num_labels, id2label, ...)."""

    def tokenizer_kwargs(self) -> dict:
        return {}

    def check_model(self, model_cfg) -> None:
        """Refuse, before any weights load, a checkpoint whose architecture cannot do this task."""

    # -- features and batches ----------------------------------------------------------
    @abstractmethod
    def featurize(self, split, tokenizer, progress=None):
        """Tokenize a split into `llmctl.train.batching.Features`; tasks that read their split in
        chunks call `progress(rows_done, rows_total)` after each."""

    @abstractmethod
    def collate(self, rows: list[dict], tokenizer) -> dict:
        """Pad a list of feature rows into model inputs (tensors) plus `index`."""

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

    # -- prediction -------------------------------------------------------------------
    @abstractmethod
    def predict_split(self, rows: list[dict], where: str):
        """Turn user input rows (dicts) into a split `featurize` accepts."""

    @abstractmethod
    def format_predictions(self, kept: dict, features, split) -> list[dict]:
        """One output dict per input row, in input order."""
