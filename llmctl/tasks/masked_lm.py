"""Masked-language-model training (BERT's pre-training objective, run_mlm.py's job): continued
pre-training of an encoder on a domain corpus before fine-tuning it for another task.

The text is tokenized once (features: the plain `tokens`, plus `word_starts` for whole-word
masking); the masks are drawn when a batch is made (llmctl.tasks.masking), anew each epoch
from the run's seed and each example's index, so resuming and sharding draw the same masks.
By default (`line_by_line: false`, run_mlm's default) every split is concatenated and cut
into `max_length`-token blocks, each block one example; `line_by_line` keeps one example per
row, truncated. The metric is the perplexity of the masked tokens (exp of their mean loss),
on evaluation masks that are the same at every evaluation.

Prediction fills masks: each row is a text holding the tokenizer's mask token, or `[MASK]`
for it, and gets the `top_k` likeliest tokens per mask (llmctl.core.fill_mask, `predict --fill-mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from llmctl.config.schema import DataConfig
from llmctl.data.sources import load_split as read_split
from llmctl.errors import DataError, ModelError
from llmctl.metrics.loss import exact_mean, token_nll
from llmctl.tasks import generative as gen
from llmctl.tasks import masking
from llmctl.tasks.base import Note, Padding, Task

# What users write for a mask; a tokenizer whose mask token differs (RoBERTa's <mask>) gets its own.
LITERAL_MASK = "[MASK]"
# Checkpoint classes that carry a masked-LM head (BertForPreTraining's loads into BertForMaskedLM).
MLM_HEAD_CLASSES = ("ForMaskedLM", "ForPreTraining")
CHUNK_ROWS = 10_000  # rows tokenized at a time (progress is reported after each)


class MaskedLMData(DataConfig):
    text_column: str = Field("text", description="Column holding the text.")
    line_by_line: bool = Field(
        False, description="One example per row, truncated to max_length; false: concatenate the rows and cut "
                           "them into max_length-token blocks (run_mlm.py's default).")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked for the loss.")
    whole_word_masking: bool = Field(
        False, description="Mask every piece of a picked word together (words from the tokenizer's word ids).")
    top_k: int = Field(5, gt=0, description="Candidates `llmctl predict` lists for each mask.")


@dataclass
class TextSplit:
    where: str
    role: str
    texts: list[str]
    notes: tuple[Note, ...] = ()

    def __len__(self) -> int:
        return len(self.texts)


def has_mlm_head(config) -> bool:
    """Whether a checkpoint's config says its weights include a masked-LM head."""
    return any(name.endswith(MLM_HEAD_CLASSES) for name in getattr(config, "architectures", None) or [])


def mask_token_id(tokenizer) -> int:
    if tokenizer.mask_token_id is None:
        raise ModelError(f"The tokenizer of '{tokenizer.name_or_path}' has no mask token, which masked-LM "
                         "training and fill-mask need.",
                         "Use a BERT-family checkpoint (BERT, RoBERTa, DistilBERT, MiniLM, ...) whose tokenizer has one.")
    return tokenizer.mask_token_id


def read_texts(cfg, role: str, spec: str, limit: int | None) -> TextSplit:
    """A split's non-empty texts (data.text_column), for masked-lm and denoising."""
    ds, where = read_split(spec, f"data.{role}", cfg.dataset, cfg.config, cfg.column_names, cfg.text_split, cfg.revision)
    ds = gen.limit_rows(ds, limit, f"data.{role}", where)
    header = cfg.column_names is None
    texts = gen.text_column(ds, cfg.text_column, "data.text_column", where, header, allow_empty=True)
    kept = [t for t in texts if t.strip()]
    if not kept:
        raise DataError(f"{where}: every row of column '{cfg.text_column}' is empty.",
                        "Check data.text_column and the file.")
    # Blank lines separate paragraphs in corpora like wikitext; run_mlm.py drops them too.
    notes = (Note(f"{where}: skipped {len(texts) - len(kept)} empty row(s)."),) if len(kept) < len(texts) else ()
    return TextSplit(where=where, role=role, texts=kept, notes=notes)


class MaskedLMTask(Task):
    name: ClassVar[str] = "masked-lm"
    data_config: ClassVar[type[DataConfig]] = MaskedLMData
    auto_model: ClassVar[str] = "AutoModelForMaskedLM"
    cacheable_features: ClassVar[bool] = True

    def check_model(self, model_cfg) -> tuple[Note, ...]:
        from llmctl.models.load import check_head, load_config

        config = load_config(model_cfg)
        check_head(self.auto_model, model_cfg, config)
        if has_mlm_head(config) or not getattr(config, "architectures", None):
            return ()
        saved = ", ".join(config.architectures)
        return (Note(f"model {model_cfg.label} was saved without a masked-LM head ({saved}); "
                     "masked-lm starts one at random and trains it with the rest."),)

    # -- data -----------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True) -> TextSplit:
        return read_texts(self.data_cfg, role, spec, self.row_limit(role))

    def model_kwargs(self) -> dict:
        return {}

    def corpus(self, split: TextSplit):
        return iter(split.texts)

    # -- features -------------------------------------------------------------------
    def featurize(self, split: TextSplit, tokenizer, progress=None):
        from llmctl.data.packing import blocks
        from llmctl.data.store import Writer
        from llmctl.data.features import Features

        mask_token_id(tokenizer)
        if split.role == "predict":
            return self._fill_mask_features(split, tokenizer)
        cfg = self.data_cfg
        tokens, word_starts = Writer(), Writer()
        for start in range(0, len(split.texts), CHUNK_ROWS):
            chunk = split.texts[start : start + CHUNK_ROWS]
            cut = {"truncation": True, "max_length": cfg.max_length} if cfg.line_by_line else {}
            encoded = tokenizer(chunk, return_attention_mask=False, return_token_type_ids=False, **cut)
            tokens.extend(encoded["input_ids"])
            if cfg.whole_word_masking:
                word_starts.extend([_word_starts(encoded.word_ids(i)) for i in range(len(chunk))])
            if progress is not None:
                progress(start + len(chunk), len(split.texts))
        columns = {"tokens": tokens.finish()}
        if cfg.whole_word_masking:
            columns["word_starts"] = word_starts.finish()
        if not cfg.line_by_line:
            columns = {name: blocks(column, cfg.max_length) for name, column in columns.items()}
        return Features(columns=columns, lengths=columns["tokens"].lengths(), tokenizer=tokenizer)

    def _fill_mask_features(self, split: TextSplit, tokenizer):
        from llmctl.data.features import Features

        mask = tokenizer.mask_token
        texts = [t.replace(LITERAL_MASK, mask) if mask != LITERAL_MASK else t for t in split.texts]
        ids = tokenizer(texts, truncation=True, max_length=self.data_cfg.max_length, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        for i, (text, row) in enumerate(zip(texts, ids)):
            if tokenizer.mask_token_id not in row:
                cut = f" within its first {self.data_cfg.max_length} tokens" if mask in text else ""
                raise DataError(f"{split.where} row {i + 1}: the text has no mask to fill{cut}.",
                                f"Write {LITERAL_MASK}" + (f" (or {mask})" if mask != LITERAL_MASK else "")
                                + " where a word should be predicted.")
        return Features(columns={"input_ids": ids}, lengths=[len(x) for x in ids], tokenizer=tokenizer)

    def padding(self, tokenizer) -> Padding:
        return Padding({"input_ids": tokenizer.pad_token_id, "labels": -100})

    def collate(self, rows: list[dict], tokenizer) -> dict:
        """Evaluation batches (the fixed evaluation masks) and prediction batches (masks as written)."""
        if "tokens" not in rows[0]:
            return super().collate(rows, tokenizer)
        return self._masked(rows, tokenizer, masking.EVAL_STREAM, masking.EVAL_SEED, masking.EVAL_EPOCH)

    def collate_for_training(self, rows: list[dict], tokenizer, seed: int, epoch: int) -> dict:
        return self._masked(rows, tokenizer, masking.TRAIN_STREAM, seed, epoch)

    def _masked(self, rows: list[dict], tokenizer, stream: int, seed: int, epoch: int) -> dict:
        specials = tuple(sorted(set(tokenizer.all_special_ids)))
        masked = masking.mask_rows(rows, specials, mask_token_id(tokenizer), len(tokenizer),
                                   self.data_cfg.mlm_probability, stream, seed, epoch)
        return super().collate(masked, tokenizer)

    # -- evaluation -----------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        # Without labels: the model's own loss would make a float32 copy of the [batch, length,
        # vocab] scores (1 GB for MiniLM at 64 x 128); token_nll scores one row at a time.
        return model(**{name: value for name, value in inputs.items() if name != "labels"})

    def outputs_to_keep(self, outputs, batch) -> dict:
        if "labels" in batch:
            return token_nll(outputs.logits, batch["labels"], shift=False)
        # Prediction: the likeliest tokens at every position; format_predictions reads the masks'.
        top = outputs.logits.float().softmax(-1).topk(min(self.data_cfg.top_k, outputs.logits.shape[-1]), dim=-1)
        return {"top_ids": top.indices, "top_scores": top.values}

    def compute_metrics(self, kept: dict, features, split) -> dict[str, float]:
        import math

        loss = exact_mean(kept["nll"], kept["tokens"])
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}  # exp overflows a float past ~709

    def default_metric(self) -> str:
        return "perplexity"

    def metric_names(self) -> list[str]:
        return ["loss", "perplexity"]

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> TextSplit:
        names = list(dict.fromkeys([self.data_cfg.text_column, "text"]))
        texts = []
        for i, row in enumerate(rows):
            value = next((row[c] for c in names if isinstance(row.get(c), str)), None)
            if value is None or not value.strip():
                raise DataError(f"{where} row {i + 1}: give the text to fill as a non-empty string in '{names[0]}'; "
                                f"fields are: {', '.join(row) or '(none)'}.",
                                f'Plain text lines and jsonl rows like {{"{names[0]}": "Paris is the {LITERAL_MASK} '
                                'of France."}} work.')
            texts.append(value)
        return TextSplit(where=where, role="predict", texts=texts)

    def format_predictions(self, kept: dict, features, split: TextSplit) -> list[dict]:
        import numpy as np

        tokenizer = features.tokenizer
        out = []
        for i, text in enumerate(split.texts):
            ids = np.asarray(features.columns["input_ids"][i])
            positions = np.flatnonzero(ids == tokenizer.mask_token_id)
            masks, filled = [], ids.copy()
            for p in positions:
                top_ids = kept["top_ids"][i][p].astype(np.int64)
                scores = kept["top_scores"][i][p]
                masks.append([{"token": tokenizer.decode([int(t)]).strip(), "id": int(t), "score": round(float(s), 6)}
                              for t, s in zip(top_ids, scores)])
                filled[p] = top_ids[0]
            out.append({"text": text, "masks": masks, "filled": tokenizer.decode(filled, skip_special_tokens=True)})
        return out


def _word_starts(word_ids: list[int | None]) -> list[int]:
    """1 where a token begins a word (special tokens stand alone), 0 where it continues the word before."""
    return [int(w is None or i == 0 or w != word_ids[i - 1]) for i, w in enumerate(word_ids)]
