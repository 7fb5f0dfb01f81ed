"""Sequence classification and regression (GLUE style): one sentence or a sentence pair.

Labels may be integers, strings or a Hub ClassLabel; their names are kept in the model
config (id2label / label2id) so predictions print names. Float targets make a
regression task (STS-B), scored with Pearson and Spearman correlations. The data keys, the
split types and reading labels (names, ids, targets) live in `classification_data`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split, looks_like_file, refuse_plain_text, row_location, streamable
from llmctl.data.streams import iter_table
from llmctl.errors import DataError
from llmctl.tasks.base import Labels, Padding, Task
from llmctl.tasks.classification_data import (ClassificationData, FileSplit, Split, encode_labels, learn_labels,
                                              missing_column)

TOKENIZE_ROWS = 2_000  # rows per tokenizer call inside a chunk (see _featurize_file)
CHUNK_ROWS = 50_000


class ClassificationTask(Task):
    name: ClassVar[str] = "classification"
    data_config: ClassVar[type[DataConfig]] = ClassificationData
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"
    cacheable_features: ClassVar[bool] = True
    distill_targets: ClassVar[str | None] = "sequence"

    def __init__(self, data_cfg: ClassificationData, labels: Labels | None = None):
        """`labels` None: what the recipe gives (data.label_names, data.regression: true), else
        nothing yet (`fit` learns it from the training split)."""
        if labels is None:
            labels = Labels(tuple(data_cfg.label_names or ()), bool(data_cfg.regression))
        super().__init__(data_cfg, labels)

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "ClassificationTask":
        data = ClassificationData.model_validate(meta["data"])
        if model_config.problem_type == "regression" or model_config.num_labels == 1:
            return cls(data, Labels(regression=True))
        return cls(data, Labels(tuple(model_config.id2label[i] for i in range(model_config.num_labels))))

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> Split | FileSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        local = not (cfg.dataset and not looks_like_file(spec))
        if local and labelled:
            refuse_plain_text(spec, key, self.name, f"a label (data.label_column: {cfg.label_column})")
        if role == "train" and labelled and local and streamable(spec, key):
            split = self._load_file_split(Path(spec).expanduser(), key)
        else:
            split = self._load_split(role, spec, key, labelled)
        if labelled and (self.labels or role != "train"):
            self._label_ids(split)  # a bad label is reported now, before any model loads
        return split

    def _load_split(self, role: str, spec: str, key: str, labelled: bool) -> Split:
        cfg = self.data_cfg
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names, cfg.text_split, cfg.revision)
        limit = self.row_limit(role)
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
        if not labelled:
            return Split(where=where, texts=texts, labels=None, has_header=header)
        if cfg.label_column not in columns:
            raise missing_column("data.label_column", cfg.label_column, where, columns)
        class_names = getattr(ds.features.get(cfg.label_column), "names", None)
        return Split(where=where, texts=texts, labels=list(ds[cfg.label_column]), has_header=header,
                     class_names=tuple(class_names) if class_names else None)

    def _load_file_split(self, path: Path, key: str) -> FileSplit:
        """The checks of load_split, one chunk at a time: every text cell present (labels: `fit`)."""
        cfg = self.data_cfg
        where, header = str(path), cfg.column_names is None
        wanted = list(cfg.text_columns) + [cfg.label_column]
        columns, chunks = iter_table(path, key, wanted, cfg.column_names, CHUNK_ROWS, self.row_limit("train"))
        for column in cfg.text_columns:
            if column not in columns:
                raise missing_column("data.text_columns", column, where, columns)
        if cfg.label_column not in columns:
            raise missing_column("data.label_column", cfg.label_column, where, columns)
        values, start, shared = [], 0, {}
        for frame in chunks:
            for column in cfg.text_columns:
                empty = frame[column].isna().to_numpy()
                if empty.any():
                    raise DataError(f"{row_location(where, start + int(empty.argmax()), header)}: column '{column}' "
                                    "is empty.", "Fill in or remove that row.")
            # One object per distinct label string, not one per row: a million string labels
            # kept until featurize would otherwise hold a million copies.
            values.extend(shared.setdefault(v, v) if isinstance(v, str) else v for v in frame[cfg.label_column].tolist())
            start += len(frame)
        if start == 0:
            raise DataError(f"{key}: {path} has no rows.", "Give a file with at least one example.")
        return FileSplit(where=where, path=path, labels=values, rows=start, has_header=header)

    def fit(self, train_split: Split | FileSplit) -> Labels:
        if self.labels:
            return self.labels  # from the recipe; load_split checked every training label against them
        labels = learn_labels(train_split, self.data_cfg)
        encode_labels(train_split.labels, labels, train_split.where, train_split.has_header)
        return labels

    def _label_ids(self, split: Split | FileSplit) -> list:
        if not self.labels:
            raise DataError("No label set known; train first or give data.label_names.")
        return encode_labels(split.labels, self.labels, split.where, split.has_header)

    # -- model ----------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        if self.labels.regression:
            return {"num_labels": 1, "problem_type": "regression"}
        names = self.labels.names
        return {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": "single_label_classification",
        }

    def metadata(self) -> dict:
        return super().metadata() | {"regression": self.labels.regression}

    # -- features -------------------------------------------------------------------
    def featurize(self, split: Split | FileSplit, tokenizer, progress=None):
        if isinstance(split, FileSplit):
            return self._featurize_file(replace(split, labels=self._label_ids(split)), tokenizer, progress)
        from llmctl.data.features import Features

        second = split.texts[1] if len(split.texts) > 1 else None
        enc = tokenizer(split.texts[0], second, truncation=True, max_length=self.data_cfg.max_length)
        columns = {"input_ids": enc["input_ids"]}
        if "token_type_ids" in enc and tokenizer.model_input_names.count("token_type_ids"):
            columns["token_type_ids"] = enc["token_type_ids"]
        if split.labels is not None:
            columns["labels"] = self._label_ids(split)
        return Features(columns=columns, lengths=[len(ids) for ids in enc["input_ids"]])

    def _featurize_file(self, split: FileSplit, tokenizer, progress=None):
        """Tokenize a training file chunk by chunk into columnar features (no per-token objects)."""
        import numpy as np

        from llmctl.data.store import Writer, to_columnar
        from llmctl.data.features import Features

        cfg = self.data_cfg
        ids, types = Writer(), Writer()
        pairs = len(cfg.text_columns) > 1 and "token_type_ids" in tokenizer.model_input_names
        _, chunks = iter_table(split.path, "data.train", list(cfg.text_columns), cfg.column_names, CHUNK_ROWS,
                               cfg.max_train_samples)
        done = 0
        for frame in chunks:
            texts = [[str(v) for v in frame[c].tolist()] for c in cfg.text_columns]
            # A fast tokenizer's encodings (tokens, offsets, masks) are far larger than the ids:
            # tokenized 50k rows at once they add ~300 MB to the peak, 2k at a time ~30 MB, same speed.
            for start in range(0, len(frame), TOKENIZE_ROWS):
                part = [column[start : start + TOKENIZE_ROWS] for column in texts]
                enc = tokenizer(part[0], part[1] if len(part) > 1 else None, truncation=True,
                                max_length=cfg.max_length)
                ids.extend(enc["input_ids"])
                if pairs:  # single sentences: all zeros, which the model assumes when they are absent
                    types.extend(enc["token_type_ids"])
                del enc, part
            done += len(frame)
            del texts, frame  # before the next chunk is read: otherwise two chunks' lists are alive at once
            if progress is not None:
                progress(done, split.rows)
        columns = {"input_ids": ids.finish()}
        if pairs:
            columns["token_type_ids"] = types.finish()
        columns["labels"] = to_columnar(split.labels)
        return Features(columns=columns, lengths=columns["input_ids"].lengths().astype(np.int32))

    def padding(self, tokenizer) -> Padding:
        return Padding(sequences={"input_ids": tokenizer.pad_token_id, "token_type_ids": 0},
                       values={"labels": "float" if self.labels.regression else "long"})

    # -- evaluation -----------------------------------------------------------------
    def outputs_to_keep(self, outputs, batch) -> dict:
        return {"logits": outputs.logits.float()}

    def default_metric(self) -> str:
        return "pearson" if self.labels.regression else "accuracy"

    def metric_names(self) -> list[str]:
        if self.labels.regression:
            return ["loss", "pearson", "spearmanr", "mse"]
        return ["loss", "accuracy", "f1", "matthews_correlation"]

    def compute_metrics(self, kept: dict, features, split: Split) -> dict[str, float]:
        import numpy as np

        from llmctl import metrics

        logits = np.stack(kept["logits"]).astype(np.float64)
        refs = self._label_ids(split)
        # The loss is recomputed here from per-example logits rather than averaged from
        # batch losses, so it counts every example exactly once under several processes.
        if self.labels.regression:
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
        f1_args = {} if len(self.labels.names) == 2 else {"average": "macro"}
        out |= metrics.load("f1").compute(predictions=preds, references=refs, **f1_args)
        out |= metrics.load("matthews_correlation").compute(predictions=preds, references=refs)
        return out

    def diagnostics(self, kept: dict, features, split: Split) -> dict:
        """The confusion matrix (rows: gold label, columns: predicted) and per-class scores."""
        import numpy as np

        if self.labels.regression:
            return {}
        names = list(self.labels.names)
        refs, preds = np.asarray(self._label_ids(split)), np.stack(kept["logits"]).argmax(-1)
        matrix = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(matrix, (refs, preds), 1)
        per_class = {}
        for i, name in enumerate(names):
            right, gold, predicted = int(matrix[i, i]), int(matrix[i].sum()), int(matrix[:, i].sum())
            precision, recall = right / predicted if predicted else 0.0, right / gold if gold else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": gold}
        return {"task": self.name, "labels": names, "confusion_matrix": matrix.tolist(), "per_class": per_class}

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> Split:
        columns = self.data_cfg.text_columns
        texts = [[] for _ in columns]
        for i, row in enumerate(rows):
            for c, column in enumerate(columns):
                name = column if column in row or len(columns) > 1 or "text" not in row else "text"
                value = row.get(name)  # a plain `text` field is fine for single-sentence models
                if name not in row:
                    raise DataError(
                        f"{where} row {i + 1}: no '{column}' field; fields are: {', '.join(row) or '(none)'}.",
                        f"The model reads {', '.join(columns)}.",
                    )
                if value is None or isinstance(value, (list, dict, bool)):
                    shape = "null" if value is None else f"a JSON {type(value).__name__}"
                    raise DataError(f"{where} row {i + 1}: '{name}' is {shape}, not text.",
                                    f"Give '{name}' as a string, e.g. {{\"{name}\": \"a fine film\"}}.")
                texts[c].append(str(value))
        return Split(where=where, texts=texts, labels=None)

    def cut_inputs(self, split: Split, tokenizer) -> tuple[Split, int, int]:
        # Truncation keeps the first max_length tokens of each text (of a pair too), so text past
        # the character budget never reaches the model.
        from llmctl.data.input_cut import char_budget, cut

        budget = char_budget(tokenizer, self.data_cfg.max_length)
        cuts = [cut(texts, budget) for texts in split.texts]
        return replace(split, texts=[texts for texts, _ in cuts]), sum(n for _, n in cuts), budget

    def references(self, split: Split) -> list:
        """The label each row holds, as a label name (a number for regression)."""
        if self.labels.regression:
            return [float(v) for v in split.labels]
        return [self.labels.names[i] for i in self._label_ids(split)]

    def format_predictions(self, kept: dict, features, split: Split) -> list[dict]:
        import numpy as np

        logits = np.stack(kept["logits"]).astype(np.float64)
        out = []
        for i, row_logits in enumerate(logits):
            row = {c: split.texts[k][i] for k, c in enumerate(self.data_cfg.text_columns)}
            if self.labels.regression:
                row["prediction"] = float(row_logits[0])
            else:
                probs = np.exp(row_logits - row_logits.max())
                probs /= probs.sum()
                best = int(probs.argmax())
                row["label"] = self.labels.names[best]
                row["score"] = round(float(probs[best]), 6)
                row["scores"] = {name: round(float(p), 6) for name, p in zip(self.labels.names, probs)}
            out.append(row)
        return out
