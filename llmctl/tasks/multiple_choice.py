"""Multiple choice (SWAG / HellaSwag / ARC / PIQA): pick the ending that follows a context.

What the model is decides how (llmctl.tasks.multiple_choice_batches): a BERT-family encoder
through AutoModelForMultipleChoice; a decoder LM by each ending's log-likelihood after the
context, as lm-evaluation-harness scores it; T5 text-to-text, each ending scored as the target
of the context with the options listed. Metrics: `accuracy`, `loss` (cross-entropy of the
choice scores over the endings) and, for the scoring families, `acc_norm`: the harness's
length-normalised accuracy (log-likelihood per character of the ending).
"""

from __future__ import annotations

from typing import ClassVar

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split
from llmctl.errors import DataError
from llmctl.tasks import generative as gen
from llmctl.tasks import multiple_choice_batches as mc
from llmctl.tasks.base import Labels, Task
from llmctl.tasks.multiple_choice_data import ChoiceSplit, MultipleChoiceData, Rows, read_split

HEADS = {"encoder": "AutoModelForMultipleChoice", "causal": "AutoModelForCausalLM",
         "seq2seq": "AutoModelForSeq2SeqLM"}


def family(config) -> str:
    """encoder, causal or seq2seq, from a model's config (the rule generative.check_architecture uses)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    kind = config.model_type
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return "encoder"
    return "causal" if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else "encoder"


class MultipleChoiceTask(Task):
    name: ClassVar[str] = "multiple-choice"
    data_config: ClassVar[type[DataConfig]] = MultipleChoiceData
    cacheable_features: ClassVar[bool] = True  # keyed by the model family too (feature_settings)

    def __init__(self, data_cfg: MultipleChoiceData, labels: Labels | None = None, kind: str | None = None):
        """`kind`: the model family (None until the model's config is known: `for_model`)."""
        super().__init__(data_cfg, labels)
        self.kind = kind

    @property
    def auto_model(self) -> str:
        return HEADS[self.kind or "encoder"]

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "MultipleChoiceTask":
        return cls(MultipleChoiceData.model_validate(meta["data"]), kind=family(model_config))

    def for_model(self, model_config) -> "MultipleChoiceTask":
        return self._replaced(kind=family(model_config))

    def feature_settings(self) -> dict:
        # An encoder reads every ending, a decoder or T5 trains on the right one alone.
        return {"kind": self.kind or "encoder"}

    def check_model(self, model_cfg) -> None:
        from llmctl.models.load import check_head, load_config

        config = load_config(model_cfg)
        if family(config) == "encoder":
            check_head(HEADS["encoder"], model_cfg, config)

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> ChoiceSplit:
        cfg = self.data_cfg
        key = f"data.{role}"
        ds, where = load_split(spec, key, cfg.dataset, cfg.config, cfg.column_names)
        ds = gen.limit_rows(ds, self.row_limit(role), key, where)
        return read_split(ds, where, cfg, role, labelled, header=cfg.column_names is None)

    def predict_split(self, rows: list[dict], where: str) -> ChoiceSplit:
        return read_split(Rows(rows), where, self.data_cfg, "predict", labelled=False, header=True)

    def model_kwargs(self) -> dict:
        return {}

    # -- features and batches --------------------------------------------------------
    def _trains(self, split: ChoiceSplit) -> bool:
        """Generative models learn from the right ending alone; every other split scores them all."""
        return split.role == "train" and split.labels is not None and self.kind != "encoder"

    def featurize(self, split: ChoiceSplit, tokenizer, progress=None):
        length = self.data_cfg.max_length
        if self.kind == "causal":
            return mc.featurize_causal(split, tokenizer, length, self._trains(split))
        if self.kind == "seq2seq":
            return mc.featurize_seq2seq(split, tokenizer, length, self._trains(split))
        return mc.featurize_encoder(split, tokenizer, length)

    def collate(self, rows: list[dict], tokenizer) -> dict:
        if "choice_ids" in rows[0]:
            return mc.collate_causal_scoring(rows)
        if "choice_labels" in rows[0]:
            return mc.collate_seq2seq_scoring(rows, tokenizer.pad_token_id)
        if self.kind == "encoder" or self.kind is None:
            return mc.collate_encoder(rows, tokenizer.pad_token_id)
        return mc.collate_training(rows, tokenizer.pad_token_id)

    # -- evaluation -----------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        if "targets" in inputs:
            return mc.causal_scores(model, inputs)
        if "choice_labels" in inputs:
            return mc.seq2seq_scores(model, inputs)
        return model(**inputs)

    def outputs_to_keep(self, outputs, batch) -> dict:
        return {"scores": outputs.scores if hasattr(outputs, "scores") else outputs.logits.float()}

    def _scores(self, kept: dict):
        import numpy as np

        return np.stack(kept["scores"]).astype(np.float64)

    def compute_metrics(self, kept: dict, features, split: ChoiceSplit) -> dict[str, float]:
        import numpy as np

        from llmctl.metrics.choice_norm import norm_lengths

        if split.labels is None:
            raise DataError(f"{split.where}: no labels to score against.", "Give data.label_column.")
        scores, gold = self._scores(kept), np.asarray(split.labels)
        rows = np.arange(len(gold))
        top = scores.max(-1, keepdims=True)
        log_probs = scores - top - np.log(np.exp(scores - top).sum(-1, keepdims=True))
        out = {"loss": float(-log_probs[rows, gold].mean()), "accuracy": float((scores.argmax(-1) == gold).mean())}
        if self.kind in ("causal", "seq2seq"):
            chars = np.array([norm_lengths(row) for row in split.endings], dtype=np.float64)
            out["acc_norm"] = float(((scores / chars).argmax(-1) == gold).mean())
        return out

    def default_metric(self) -> str:
        return "accuracy"

    def metric_names(self) -> list[str] | None:
        if self.kind is None:
            return None  # acc_norm depends on the model family, known once its config is read
        return ["loss", "accuracy"] + (["acc_norm"] if self.kind != "encoder" else [])

    def references(self, split: ChoiceSplit) -> list | None:
        """The right ending's index per row (None when the split has no labels)."""
        return None if split.labels is None else [int(label) for label in split.labels]

    def format_predictions(self, kept: dict, features, split: ChoiceSplit) -> list[dict]:
        out = []
        for i, scores in enumerate(self._scores(kept)):
            best = int(scores.argmax())
            out.append({self.data_cfg.context_column: split.contexts[i], "prediction": best,
                        "ending": split.endings[i][best], "scores": [round(float(s), 6) for s in scores]})
        return out
