"""Sequence classification and regression (GLUE style): one sentence or a sentence pair.

Labels may be integers, strings or a Hub ClassLabel; their names are kept in the model
config (id2label / label2id) so predictions print names. Float targets make a
regression task (STS-B), scored with Pearson and Spearman correlations.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from llmctl.config.schema import DataConfig
from llmctl.data.sources import iter_table, load_split, looks_like_file, row_location
from llmctl.errors import DataError
from llmctl.tasks.base import Task


class ClassificationData(DataConfig):
    text_columns: list[str] = Field(["sentence"], description="One column, or two for sentence pairs.")
    label_column: str = Field("label", description="Column holding the label (or the number for regression).")
    label_names: list[str] | None = Field(
        None, description="Label names in id order; integer labels index into it. Default: sorted labels of train."
    )
    regression: bool | None = Field(None, description="Predict a number (STS-B). Default: true for float labels.")

    @field_validator("text_columns")
    @classmethod
    def _one_or_two(cls, value):
        if not 1 <= len(value) <= 2:
            raise ValueError("give one text column, or two for sentence pairs")
        return value


@dataclass
class Split:
    """Validated raw examples of one split."""

    where: str
    texts: list[list[str]]  # one list per text column
    labels: list | None  # label ids (int) or targets (float); None when unlabelled
    has_header: bool = True

    def __len__(self) -> int:
        return len(self.texts[0])


@dataclass
class FileSplit:
    """A training file checked row by row but not held in memory: featurize reads it again in
    chunks (llmctl.data.sources.iter_table). Only the label ids are kept."""

    where: str
    path: Path
    labels: list
    rows: int
    has_header: bool = True
    texts = None  # never materialised

    def __len__(self) -> int:
        return self.rows


STREAMED = (".csv", ".tsv", ".parquet")  # formats read in chunks
CHUNK_ROWS = 50_000


def missing_column(key: str, column: str, where: str, columns: list[str]) -> DataError:
    close = difflib.get_close_matches(column, columns, n=1)
    tip = f"Did you mean '{close[0]}'? " if close else ""
    return DataError(
        f"{key}: column '{column}' is not in {where}; its columns are: {', '.join(columns)}.",
        f"{tip}Set {key} to one of them (or data.column_names for a file without a header).",
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ClassificationTask(Task):
    name: ClassVar[str] = "classification"
    data_config: ClassVar[type[DataConfig]] = ClassificationData
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"
    cacheable_features: ClassVar[bool] = True

    def __init__(self, data_cfg: ClassificationData, labels: list[str] | None = None, regression: bool | None = None):
        super().__init__(data_cfg)
        self.labels = labels if labels is not None else data_cfg.label_names
        self.regression = regression if regression is not None else bool(data_cfg.regression)

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "ClassificationTask":
        data = ClassificationData.model_validate(meta["data"])
        regression = model_config.problem_type == "regression" or model_config.num_labels == 1
        labels = None if regression else [model_config.id2label[i] for i in range(model_config.num_labels)]
        return cls(data, labels=labels, regression=regression)

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> Split | FileSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        if role == "train" and labelled and not (cfg.dataset and not looks_like_file(spec)) \
                and Path(spec).suffix.lower() in STREAMED:
            return self._load_file_split(Path(spec).expanduser(), key)
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names)
        limit = cfg.max_train_samples if role == "train" else cfg.max_eval_samples
        if limit is not None and len(ds) > limit:
            ds = ds.select(range(limit))
        if len(ds) == 0:
            raise DataError(f"{key}: {where} is empty.", "Give a split with at least one example.")
        columns = list(ds.column_names)
        for column in cfg.text_columns:
            if column not in columns:
                raise missing_column("data.text_columns", column, where, columns)
        header = cfg.column_names is None
        texts = []
        for column in cfg.text_columns:
            values = ds[column]
            for i, value in enumerate(values):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    raise DataError(f"{row_location(where, i, header)}: column '{column}' is empty.",
                                    "Fill in or remove that row.")
            texts.append([str(v) for v in values])
        labels = None
        if labelled:
            if cfg.label_column not in columns:
                raise missing_column("data.label_column", cfg.label_column, where, columns)
            if role == "train" and self.labels is None and not self.regression:
                self._names_from_feature(ds.features.get(cfg.label_column))
            labels = self._label_ids(ds[cfg.label_column], where, header, fitting=role == "train")
        return Split(where=where, texts=texts, labels=labels, has_header=header)

    def _load_file_split(self, path: Path, key: str) -> FileSplit:
        """The checks of load_split, one chunk at a time: every text cell present, every label valid."""
        cfg = self.data_cfg
        where, header = str(path), cfg.column_names is None
        wanted = list(cfg.text_columns) + [cfg.label_column]
        columns, chunks = iter_table(path, key, wanted, cfg.column_names, CHUNK_ROWS, cfg.max_train_samples)
        for column in cfg.text_columns:
            if column not in columns:
                raise missing_column("data.text_columns", column, where, columns)
        if cfg.label_column not in columns:
            raise missing_column("data.label_column", cfg.label_column, where, columns)
        values, start = [], 0
        for frame in chunks:
            for column in cfg.text_columns:
                empty = frame[column].isna().to_numpy()
                if empty.any():
                    raise DataError(f"{row_location(where, start + int(empty.argmax()), header)}: column '{column}' "
                                    "is empty.", "Fill in or remove that row.")
            values.extend(frame[cfg.label_column].tolist())
            start += len(frame)
        if start == 0:
            raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
        labels = self._label_ids(values, where, header, fitting=True)
        return FileSplit(where=where, path=path, labels=labels, rows=start, has_header=header)

    def _names_from_feature(self, feature) -> None:
        names = getattr(feature, "names", None)
        if names:
            self.labels = list(names)

    def _label_ids(self, values: list, where: str, header: bool, fitting: bool) -> list:
        auto_regression = self.data_cfg.regression is None and self.labels is None and fitting
        if auto_regression and any(_is_number(v) and float(v) != int(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))):
            self.regression = True
        if self.regression:
            return [self._target(v, where, i, header) for i, v in enumerate(values)]
        if self.labels is None:
            if fitting:
                self.labels = self._fit_names(values, where, header)
            else:
                raise DataError("No label set known; train first or give data.label_names.")
        lookup = {name: i for i, name in enumerate(self.labels)}
        ids = []
        for i, value in enumerate(values):
            ids.append(self._label_id(value, lookup, where, i, header))
        return ids

    def _fit_names(self, values, where, header) -> list[str]:
        present = []
        for i, value in enumerate(values):
            if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
                raise DataError(f"{row_location(where, i, header)}: the label is empty.", "Label every training row.")
            present.append(value)
        if all(_is_number(v) for v in present):
            ints = sorted({int(v) for v in present})
            if ints and ints[0] < 0:
                raise DataError(f"{where}: label {ints[0]} is negative (unlabelled rows?).",
                                "Remove unlabelled rows from the training split.")
            return [str(i) for i in range(max(ints) + 1)] if ints[0] == 0 else [str(i) for i in ints]
        return sorted({str(v).strip() for v in present})

    def _label_id(self, value, lookup: dict, where: str, i: int, header: bool) -> int:
        if _is_number(value) and float(value) == int(value):
            as_name = str(int(value))
            if as_name in lookup:
                return lookup[as_name]
            if 0 <= int(value) < len(self.labels) and not any(n.lstrip("-").isdigit() for n in self.labels):
                return int(value)  # integer labels index into names from label_names / ClassLabel
        elif isinstance(value, str) and value.strip() in lookup:
            return lookup[value.strip()]
        shown = ", ".join(self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
        raise DataError(
            f"{row_location(where, i, header)}: label {value!r} is not one of the known labels ({shown}).",
            "Fix the row, or list every label in data.label_names.",
        )

    def _target(self, value, where, i, header) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if math.isnan(number) or math.isinf(number):
            raise DataError(
                f"{row_location(where, i, header)}: regression target {value!r} is not a number.",
                "Fix the row; regression labels must be numbers.",
            )
        return number

    # -- model ----------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        if self.regression:
            return {"num_labels": 1, "problem_type": "regression"}
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "problem_type": "single_label_classification",
        }

    def metadata(self) -> dict:
        return super().metadata() | {"regression": self.regression}

    # -- features -------------------------------------------------------------------
    def featurize(self, split: Split | FileSplit, tokenizer, progress=None):
        if isinstance(split, FileSplit):
            return self._featurize_file(split, tokenizer, progress)
        from llmctl.train.batching import Features

        second = split.texts[1] if len(split.texts) > 1 else None
        enc = tokenizer(split.texts[0], second, truncation=True, max_length=self.data_cfg.max_length)
        columns = {"input_ids": enc["input_ids"]}
        if "token_type_ids" in enc and tokenizer.model_input_names.count("token_type_ids"):
            columns["token_type_ids"] = enc["token_type_ids"]
        if split.labels is not None:
            columns["labels"] = split.labels
        return Features(columns=columns, lengths=[len(ids) for ids in enc["input_ids"]])

    def _featurize_file(self, split: FileSplit, tokenizer, progress=None):
        """Tokenize a training file chunk by chunk into columnar features (no per-token objects)."""
        import numpy as np

        from llmctl.data.store import Writer, to_columnar
        from llmctl.train.batching import Features

        cfg = self.data_cfg
        ids, types = Writer(), Writer()
        pairs = len(cfg.text_columns) > 1 and "token_type_ids" in tokenizer.model_input_names
        _, chunks = iter_table(split.path, "data.train", list(cfg.text_columns), cfg.column_names, CHUNK_ROWS,
                               cfg.max_train_samples)
        done = 0
        for frame in chunks:
            texts = [[str(v) for v in frame[c].tolist()] for c in cfg.text_columns]
            enc = tokenizer(texts[0], texts[1] if len(texts) > 1 else None, truncation=True, max_length=cfg.max_length)
            ids.extend(enc["input_ids"])
            if pairs:  # single sentences: all zeros, which the model assumes when they are absent
                types.extend(enc["token_type_ids"])
            done += len(frame)
            del enc, texts, frame  # before the next chunk is read: otherwise two chunks' lists are alive at once
            if progress is not None:
                progress(done, split.rows)
        columns = {"input_ids": ids.finish()}
        if pairs:
            columns["token_type_ids"] = types.finish()
        columns["labels"] = to_columnar(split.labels)
        return Features(columns=columns, lengths=columns["input_ids"].lengths().astype(np.int32))

    def collate(self, rows: list[dict], tokenizer) -> dict:
        import torch

        from llmctl.train.batching import pad_stack

        batch = {"input_ids": pad_stack(rows, "input_ids", tokenizer.pad_token_id)}
        lengths = torch.tensor([len(r["input_ids"]) for r in rows])
        batch["attention_mask"] = (torch.arange(batch["input_ids"].shape[1])[None, :] < lengths[:, None]).long()
        if "token_type_ids" in rows[0]:
            batch["token_type_ids"] = pad_stack(rows, "token_type_ids", 0)
        if "labels" in rows[0]:
            dtype = torch.float if self.regression else torch.long
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=dtype)
        batch["index"] = torch.tensor([r["index"] for r in rows])
        return batch

    # -- evaluation -----------------------------------------------------------------
    def outputs_to_keep(self, outputs, batch) -> dict:
        return {"logits": outputs.logits.float()}

    def default_metric(self) -> str:
        return "pearson" if self.regression else "accuracy"

    def metric_names(self) -> list[str]:
        if self.regression:
            return ["loss", "pearson", "spearmanr", "mse"]
        return ["loss", "accuracy", "f1", "matthews_correlation"]

    def compute_metrics(self, kept: dict, features, split: Split) -> dict[str, float]:
        import numpy as np

        from llmctl import metrics

        logits = np.stack(kept["logits"]).astype(np.float64)
        refs = split.labels
        # The loss is recomputed here from per-example logits rather than averaged from
        # batch losses, so it counts every example exactly once under several processes.
        if self.regression:
            preds = logits[:, 0]
            out = {"loss": float(np.mean((preds - np.asarray(refs)) ** 2))}
            out |= metrics.load("pearsonr").compute(predictions=preds, references=refs)
            out |= metrics.load("spearmanr").compute(predictions=preds, references=refs)
            out["mse"] = out["loss"]
            return out
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        out = {"loss": float(-log_probs[np.arange(len(refs)), refs].mean())}
        preds = logits.argmax(-1)
        out |= metrics.load("accuracy").compute(predictions=preds, references=refs)
        f1_args = {} if len(self.labels) == 2 else {"average": "macro"}
        out |= metrics.load("f1").compute(predictions=preds, references=refs, **f1_args)
        out |= metrics.load("matthews_correlation").compute(predictions=preds, references=refs)
        return out

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> Split:
        columns = self.data_cfg.text_columns
        texts = [[] for _ in columns]
        for i, row in enumerate(rows):
            for c, column in enumerate(columns):
                value = row.get(column)
                if value is None and len(columns) == 1 and "text" in row:
                    value = row["text"]  # a plain `text` field is fine for single-sentence models
                if value is None:
                    raise DataError(
                        f"{where} row {i + 1}: no '{column}' field; fields are: {', '.join(row) or '(none)'}.",
                        f"The model reads {', '.join(columns)}.",
                    )
                texts[c].append(str(value))
        return Split(where=where, texts=texts, labels=None)

    def format_predictions(self, kept: dict, features, split: Split) -> list[dict]:
        import numpy as np

        logits = np.stack(kept["logits"]).astype(np.float64)
        out = []
        for i, row_logits in enumerate(logits):
            row = {c: split.texts[k][i] for k, c in enumerate(self.data_cfg.text_columns)}
            if self.regression:
                row["prediction"] = float(row_logits[0])
            else:
                probs = np.exp(row_logits - row_logits.max())
                probs /= probs.sum()
                best = int(probs.argmax())
                row["label"] = self.labels[best]
                row["score"] = round(float(probs[best]), 6)
                row["scores"] = {name: round(float(p), 6) for name, p in zip(self.labels, probs)}
            out.append(row)
        return out
